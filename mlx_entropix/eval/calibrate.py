"""Calibration: quadrant thresholds and the whole policy from a model's own metric distributions.

The original thresholds (entropy 0.1 / 3 / 5 bits, varentropy 0.1 / 5) were tuned by hand for
Llama-3.2-1B. A 135M model is far less sure of itself, so with them almost nothing is
"flowing" and most tokens land at a "fork". This runs the model on a prompt set with the
normal sampler (seeded), collects every token's metrics and places each threshold at a
quantile of what it saw:

    low_ent, low_vent    at ``q_low``  (default 0.25: the surest quarter flows)
    med_ent              at ``q_med``  (default 0.60)
    high_ent, high_vent  at ``q_high`` (default 0.90)

Then ``fit_policy`` fits the coefficients, not only the thresholds, so that each state's
parameters land where the reference meant them to for this model's metric scale (the
reference's gains were set by hand for Llama-3.2-1B; on a 135M model whose H + V is routinely
5-10 bits they drove the adaptive temperature to 2-4.6 and min_p to its clip):
- adaptive temperature T = T0 (offset + a (H + V)), attention and agreement terms dropped: the
  10th and 90th percentiles of H + V over the adaptive tokens map onto ``band`` (T0, the base
  temperature, stays normal mode's);
- every other gain is divided by the median of its metric, so a typical token gets the factor
  the reference meant (fork T = 1.5 x the adaptive scale at the median interaction strength,
  adaptive top_k x 1.3, top_p x 1.1 at the median attention varentropy...);
- adaptive min_p runs from ``adaptive_min_p`` down to half of it at the 90th percentile;
- ``mist=False`` puts high_ent above log2(vocabulary), the largest possible entropy: the
  hot "lost in the mist" (T >= 2) and "treading" states never fire.

    uv run python -m mlx_entropix.eval.calibrate                 # embedded model, built-in prompts
    uv run python -m mlx_entropix.eval.calibrate --model DIR --out my.json --band 0.1,0.3
    uv run python -m mlx_entropix.eval.calibrate confidence dev.json   # see confidence_cli.py
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..config import CONFIG_DIR, SamplerConfig
from ..errors import EntropixError
from ..events import STATE_INFO, STATES
from ..io.prompts import load_prompts
from ..uncertainty.metrics import METRIC_NAMES
from ..uncertainty.sampler import classify_states
from .harness import build_prompt, load_items
from .rows import Job, run_jobs

DEFAULT_QUANTILES = {"q_low": 0.25, "q_med": 0.60, "q_high": 0.90}
THRESHOLDS = ("low_ent", "low_vent", "med_ent", "high_ent", "high_vent")


def propose(
    metrics: np.ndarray,
    q_low: float = DEFAULT_QUANTILES["q_low"],
    q_med: float = DEFAULT_QUANTILES["q_med"],
    q_high: float = DEFAULT_QUANTILES["q_high"],
) -> SamplerConfig:
    """The default config with its thresholds at quantiles of ``metrics`` (N, 6)."""
    if not 0 < q_low < q_med < q_high < 1:
        raise ValueError("need 0 < q_low < q_med < q_high < 1")
    at = {"low_ent": (0, q_low), "low_vent": (1, q_low), "med_ent": (0, q_med),
          "high_ent": (0, q_high), "high_vent": (1, q_high)}  # fmt: skip
    quantiles = {k: round(float(np.quantile(metrics[:, i], q)), 4) for k, (i, q) in at.items()}
    return SamplerConfig().merged(quantiles)


def _adaptive_u(metrics: np.ndarray, base: SamplerConfig) -> np.ndarray:
    """H + V of the tokens ``base`` files under "adaptive"."""
    states = np.array(classify_states(metrics.tolist(), base))
    return metrics[states == "adaptive"][:, :2].sum(axis=1)


def fit_policy(
    metrics: np.ndarray,
    base: SamplerConfig,
    band: tuple[float, float] = (0.1, 0.3),
    adaptive_min_p: float = 0.1,
    mist: bool = False,
    vocab_size: int = 49152,
) -> SamplerConfig:
    """``base`` (its thresholds already calibrated) with every coefficient fitted to ``metrics``
    (N, 6), as the module docstring says. Pure: the same metrics give the same config."""
    lo, hi = band
    if not 0 < lo < hi:
        raise ValueError("need 0 < band low < band high")
    u = _adaptive_u(metrics, base)
    if len(u) < 10:
        raise ValueError("too few adaptive tokens to fit the adaptive temperature")
    u10, u90 = float(np.quantile(u, 0.1)), float(np.quantile(u, 0.9))
    t0 = base.temperature
    gain = (hi - lo) / (t0 * (u90 - u10))  # T(u) = t0 (offset + gain u) through both points
    # scale = offset = T(H + V = 0) / t0: the adaptive scale that the reference's "T0" stood
    # for; the other states' temperature formulas are expressed on it.
    scale = lo / t0 - gain * u10
    if scale <= 0:
        raise ValueError(f"band {band} extrapolates to T <= 0 at H + V = 0: widen it")
    med_aent, med_avent, med_ints = (float(np.median(metrics[:, i])) for i in (2, 3, 5))
    r = lambda x: round(float(x), 6)  # noqa: E731
    return base.merged(
        {
            "ada_temp_offset": r(scale),
            "ada_temp_logits": r(gain),
            "ada_temp_attn": 0.0,
            "ada_temp_agree": 0.0,
            "ada_top_p": r(0.1 / med_avent),
            "ada_top_k_int": r(0.3 / med_ints),
            "ada_top_k_agree": 0.0,
            "ada_min_p_offset": r(adaptive_min_p / base.min_p),
            "ada_min_p": r(0.5 * adaptive_min_p / base.min_p / u90),
            "helv_attn_ent_offset": r(1.3 * scale),
            "helv_attn_ent_coef": r(0.2 * scale / med_aent),
            "lehv_interaction_strength_offset": r(1.2 * scale),
            "lehv_interaction_strength_coef": r(0.3 * scale / med_ints),
            "hehv_attn_ent_coef": r(0.2 / med_aent),
            "hehv_attn_vent_offset": r(2.0 * scale),
            "hehv_attn_vent_coef": r(0.5 * scale / med_avent),
            **({} if mist else {"high_ent": round(float(np.log2(vocab_size)) + 0.005, 4)}),
        }
    )


# Target shares of ``fit_thresholds``: every state occurs (the rarest, "treading", as often as
# this model's flat-and-even distributions allow), most tokens flow or adapt.
DEFAULT_TARGETS = {"flowing": 0.30, "treading": 0.04, "exploring": 0.10, "resampling": 0.08,
                   "adaptive": 0.48}  # fmt: skip


def fit_thresholds(metrics: np.ndarray, min_share: float = 0.02) -> SamplerConfig:
    """Thresholds whose state shares on ``metrics`` (N, 6) come closest to ``DEFAULT_TARGETS`` (the
    sum of |log(share / target)|) with every state at ``min_share`` or more: a search over quantile
    grids of entropy and varentropy. Unlike ``propose``'s fixed quantiles this keeps each
    quadrant reachable on a model whose varentropy grows with its entropy (a flat distribution
    with a low varentropy, "treading", is then rare at any fixed low quantile). Pure."""
    want = np.array([DEFAULT_TARGETS[s] for s in STATES])
    e, v = metrics[:, 0], metrics[:, 1]
    grid = lambda x, lo, hi, step: np.quantile(x, np.arange(lo, hi, step))  # noqa: E731
    med_ent = float(np.quantile(e, 0.6))
    best: tuple[float, tuple[float, ...]] | None = None
    hvs = grid(v, 0.5, 0.99, 0.02)
    above = v[None, :] > hvs[:, None]  # (high_vent candidates, tokens), tested all at once
    for le in grid(e, 0.15, 0.5, 0.05):
        for lv in grid(v, 0.1, 0.7, 0.05):
            fl = (e < le) & (v < lv)
            for he in grid(e, 0.6, 0.99, 0.02):
                me = min(he, med_ent)
                tr = (e > he) & (v < lv) & ~fl
                ex = (e < he) & above & ~fl & ~tr
                rs = (e > me) & above & ~fl & ~tr & ~ex
                ad = ~(fl | tr | ex | rs)
                got = np.stack(
                    [np.broadcast_to(fl.mean(), len(hvs)), np.broadcast_to(tr.mean(), len(hvs)),
                     ex.mean(1), rs.mean(1), ad.mean(1)], axis=1,
                )  # fmt: skip
                ok = got.min(axis=1) >= min_share
                if not ok.any():
                    continue
                loss = np.where(ok, np.abs(np.log(np.maximum(got, 1e-9) / want)).sum(1), np.inf)
                i = int(np.argmin(loss))
                if best is None or loss[i] < best[0]:
                    best = (float(loss[i]), (le, lv, me, he, float(hvs[i])))
    if best is None:
        raise ValueError(f"no thresholds give every state {min_share:.0%} of these tokens")
    return SamplerConfig().merged(
        {k: round(float(x), 4) for k, x in zip(THRESHOLDS, best[1], strict=True)}
    )


def heat_policy(
    metrics: np.ndarray,
    base: SamplerConfig,
    heat: float,
    gate: float = 0.5,
    adaptive_min_p: float = 0.1,
) -> SamplerConfig:
    """An entropix policy on one knob, ``heat``: the temperature of the uncertain states.

    Adaptive T = max(0, T0 (offset + gain (H + V))) is 0 (argmax) up to the ``gate`` quantile
    of H + V over the adaptive tokens and reaches ``heat`` at their 90th percentile; the
    exploring and treading temperatures are ``heat`` at the median of their attention metric,
    the mist's floor is ``heat`` (the original's 2.0 is far hotter than this model bears).
    One adaptive draw per token. Thresholds from ``base``. Pure.
    """
    if heat <= 0 or not 0 <= gate < 0.9:
        raise ValueError("need heat > 0 and 0 <= gate < 0.9")
    # fit_policy's other gains (top-p, top-k, min-p, the mist's top-p); its adaptive band is
    # replaced below, so a narrow one that any spread of H + V can carry is given.
    fitted = fit_policy(metrics, base, (0.2, 0.2001), adaptive_min_p, mist=True)
    u = _adaptive_u(metrics, base)
    u_gate, u90 = float(np.quantile(u, gate)), float(np.quantile(u, 0.9))
    t0 = base.temperature
    gain = heat / (t0 * (u90 - u_gate))
    med_aent, med_avent, med_ints = (float(np.median(metrics[:, i])) for i in (2, 3, 5))
    r = lambda x: round(float(x), 6)  # noqa: E731
    return fitted.merged(
        {
            "ada_temp_offset": r(-gain * u_gate),
            "ada_temp_logits": r(gain),
            "n_adaptive_samples": 1,
            "lehv_interaction_strength_offset": r(0.8 * heat / t0),
            "lehv_interaction_strength_coef": r(0.2 * heat / t0 / med_ints),
            "helv_attn_ent_offset": r(0.8 * heat / t0),
            "helv_attn_ent_coef": r(0.2 * heat / t0 / med_aent),
            "hehv_attn_vent_offset": r(heat / t0),
            "hehv_attn_vent_coef": r(0.2 * heat / t0 / med_avent),
            "mist_min_temperature": r(heat),
        }
    )


def state_shares(metrics: np.ndarray, cfg: SamplerConfig) -> dict[str, float]:
    """Share of tokens each state would get under ``cfg``."""
    counts = Counter(classify_states(metrics.tolist(), cfg))
    return {s: counts.get(s, 0) / max(len(metrics), 1) for s in STATES}


def collect(lm, prompts: list[str], max_tokens: int, seed: int) -> np.ndarray:
    """Every generated token's six metrics over ``prompts`` (normal sampling, seeded)."""
    from ..engine.generate import generate

    rows = []
    for i, prompt in enumerate(prompts):
        for event in generate(lm, prompt, mode="normal", max_tokens=max_tokens, seed=seed + i):
            if event.type == "token":
                rows.append(list(event.metrics.model_dump().values()))
    return np.array(rows, dtype=np.float64)


def mix_jobs(lm, seed: int) -> list:
    """The realistic prompt mix: the built-in prompt set, the open dev prompts
    (``data/open/dev.csv``) and the first 10 items of each category of the eval dev split
    (``data/eval/dev.csv``), each one row of normal sampling."""
    from ..engine.generate import prepare_prompt

    root = Path(__file__).resolve().parents[2] / "data"
    cfg = lm.default_config
    texts = [p.prompt for p in load_prompts(None) + load_prompts(root / "open" / "dev.csv")]
    jobs = [Job(("chat", i), prepare_prompt(lm, t), cfg, "normal", (seed,))
            for i, t in enumerate(texts)]  # fmt: skip
    taken: Counter[str] = Counter()
    for item in load_items(root / "eval" / "dev.csv"):
        if taken[item.category] < 10:
            taken[item.category] += 1
            ids = prepare_prompt(lm, build_prompt(lm.tokenizer, item, None, ()))
            stop = ("\n",) if item.format == "raw" else ()
            jobs.append(Job(("dev", item.index), ids, cfg, "normal", (seed,), stop))
    return jobs


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["confidence"]:  # the answer-confidence map: eval/confidence_fit.py
        from .confidence_cli import main as confidence_main

        return confidence_main(given[1:])
    parser = argparse.ArgumentParser(
        prog="python -m mlx_entropix.eval.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model path or id (default: embedded)")
    parser.add_argument(
        "--prompts", default=None, help="prompt CSV (default: mlx_entropix/data/prompts.csv)"
    )
    parser.add_argument(
        "--mix", action="store_true",
        help="the realistic mix: prompt set + open dev prompts + dev items (one batch)",
    )  # fmt: skip
    parser.add_argument(
        "--fit-thresholds", action="store_true", help="target shares, every state reachable"
    )
    parser.add_argument("--heat", type=float, default=None, help="heat_policy instead")
    parser.add_argument("--metrics-out", default=None, help="write the tokens' metrics here")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="config JSON to write (default: configs/)")
    parser.add_argument("--report", default=None, help="also write the metrics/shares JSON here")
    for name, value in DEFAULT_QUANTILES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)
    parser.add_argument("--band", default="0.1,0.3", help="adaptive temperature band LO,HI")
    parser.add_argument("--adaptive-min-p", type=float, default=0.1)
    parser.add_argument("--keep-mist", action="store_true", help="keep the hot mist state")
    parser.add_argument(
        "--thresholds-only", action="store_true", help="fit the thresholds, keep the coefficients"
    )
    args = parser.parse_args(argv)
    try:
        band = tuple(float(x) for x in args.band.split(","))
        if len(band) != 2:
            raise ValueError
    except ValueError:
        parser.error(f"--band takes LO,HI (got {args.band!r})")

    from ..io.load import load

    try:
        lm = load(args.model)
        if args.mix:
            jobs = mix_jobs(lm, args.seed)
            prompts = [str(j.key) for j in jobs]
            results = run_jobs(lm, jobs, max_tokens=args.max_tokens)
            metrics = np.array([m for r in results for m in r.metrics], dtype=np.float64)
        else:
            prompts = [p.prompt for p in load_prompts(args.prompts)]
            metrics = collect(lm, prompts, args.max_tokens, args.seed)
    except EntropixError as err:
        print(f"calibrate: error: {err}", file=sys.stderr)
        return 2
    if args.metrics_out:
        rows = json.dumps(metrics.round(4).tolist()) + "\n"
        Path(args.metrics_out).write_text(rows, encoding="utf-8")
    try:
        if args.fit_thresholds:
            cfg = fit_thresholds(metrics)
        else:
            cfg = propose(metrics, args.q_low, args.q_med, args.q_high)
        if args.heat is not None:
            cfg = heat_policy(metrics, cfg, args.heat, adaptive_min_p=args.adaptive_min_p)
        elif not args.thresholds_only:
            cfg = fit_policy(
                metrics, cfg, band, args.adaptive_min_p, args.keep_mist, lm.info.vocab_size
            )
    except ValueError as err:
        print(f"calibrate: error: {err}", file=sys.stderr)
        return 2
    stem = Path(lm.info.path).name.split(".")[0].lower()
    out = Path(args.out) if args.out else CONFIG_DIR / f"{stem}.json"
    cfg.to_file(out)
    shares = {
        "original thresholds": state_shares(metrics, SamplerConfig()),
        "calibrated": state_shares(metrics, cfg),
    }
    print(f"{len(metrics)} tokens from {len(prompts)} prompts on {lm.info.name}")
    print(json.dumps({k: getattr(cfg, k) for k in THRESHOLDS}))
    lines = ["| state | " + " | ".join(shares) + " |", "|---|" + "---|" * len(shares)]
    for s in STATES:
        row = " | ".join(f"{shares[n][s]:.1%}" for n in shares)
        lines.append(f"| {s} ({STATE_INFO[s].label}) | {row} |")
    print("\n".join(lines))
    print(f"wrote {out}")
    if args.report:
        pct = {
            name: np.percentile(metrics[:, i], [5, 25, 50, 75, 90, 95]).round(4).tolist()
            for i, name in enumerate(METRIC_NAMES)
        }
        report = {
            "model": lm.info.name,
            "tokens": len(metrics),
            "prompts": len(prompts),
            "percentiles_5_25_50_75_90_95": pct,
            "state_shares": shares,
            "quantiles": {"q_low": args.q_low, "q_med": args.q_med, "q_high": args.q_high},
        }
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
