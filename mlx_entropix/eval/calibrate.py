"""Threshold calibration: propose quadrant thresholds from a model's own metric quantiles.

The original thresholds (entropy 0.1 / 3 / 5 bits, varentropy 0.1 / 5) were tuned by hand for
Llama-3.2-1B. A 135M model is far less sure of itself, so with them almost nothing is
"flowing" and most tokens land at a "fork". This runs the model on a prompt set with the
normal sampler (seeded), collects every token's metrics and places each threshold at a
quantile of what it saw:

    low_ent, low_vent    at ``q_low``  (default 0.25: the surest quarter flows)
    med_ent              at ``q_med``  (default 0.60)
    high_ent, high_vent  at ``q_high`` (default 0.90)

    uv run python -m mlx_entropix.calibrate                      # embedded model, built-in prompts
    uv run python -m mlx_entropix.calibrate --model DIR --out my.json --max-tokens 96
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
from ..metrics import METRIC_NAMES
from ..sampler import classify_states

DEFAULT_QUANTILES = {"q_low": 0.25, "q_med": 0.60, "q_high": 0.90}


def propose(
    metrics: np.ndarray,
    base: SamplerConfig | None = None,
    q_low: float = DEFAULT_QUANTILES["q_low"],
    q_med: float = DEFAULT_QUANTILES["q_med"],
    q_high: float = DEFAULT_QUANTILES["q_high"],
) -> SamplerConfig:
    """A config whose thresholds sit at quantiles of ``metrics`` (N, 6); all else from ``base``.

    Pure: the same metrics give the same thresholds.
    """
    if not 0 < q_low < q_med < q_high < 1:
        raise ValueError("need 0 < q_low < q_med < q_high < 1")
    ent, vent = metrics[:, 0], metrics[:, 1]

    def q(x: np.ndarray, level: float) -> float:
        return round(float(np.quantile(x, level)), 4)

    return (base or SamplerConfig()).merged(
        {
            "low_ent": q(ent, q_low),
            "low_vent": q(vent, q_low),
            "med_ent": q(ent, q_med),
            "high_ent": q(ent, q_high),
            "high_vent": q(vent, q_high),
        }
    )


def state_shares(metrics: np.ndarray, cfg: SamplerConfig) -> dict[str, float]:
    """Share of tokens each state would get under ``cfg``."""
    counts = Counter(classify_states(metrics.tolist(), cfg))
    return {s: counts.get(s, 0) / max(len(metrics), 1) for s in STATES}


def collect(lm, prompts: list[str], max_tokens: int, seed: int) -> np.ndarray:
    """Every generated token's six metrics over ``prompts`` (normal sampling, seeded)."""
    from ..generate import generate

    rows = []
    for i, prompt in enumerate(prompts):
        for event in generate(lm, prompt, mode="normal", max_tokens=max_tokens, seed=seed + i):
            if event.type == "token":
                rows.append(list(event.metrics.model_dump().values()))
    return np.array(rows, dtype=np.float64)


def _table(shares: dict[str, dict[str, float]]) -> str:
    names = list(shares)
    lines = ["| state | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for s in STATES:
        row = " | ".join(f"{shares[n][s]:.1%}" for n in names)
        lines.append(f"| {s} ({STATE_INFO[s].label}) | {row} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_entropix.calibrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model path or id (default: embedded)")
    parser.add_argument("--prompts", default=None, help="prompt CSV (default: data/prompts.csv)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="config JSON to write (default: configs/)")
    parser.add_argument("--report", default=None, help="also write the metrics/shares JSON here")
    for name, value in DEFAULT_QUANTILES.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=value)
    args = parser.parse_args(argv)

    from ..io.load import load
    from ..io.prompts import load_prompts

    try:
        lm = load(args.model)
        prompts = [p.prompt for p in load_prompts(args.prompts)]
        metrics = collect(lm, prompts, args.max_tokens, args.seed)
    except EntropixError as err:
        print(f"calibrate: error: {err}", file=sys.stderr)
        return 2
    cfg = propose(metrics, SamplerConfig(), args.q_low, args.q_med, args.q_high)
    out = (
        Path(args.out)
        if args.out
        else CONFIG_DIR / f"{Path(lm.info.path).name.split('.')[0].lower()}.json"
    )
    cfg.to_file(out)
    shares = {
        "original thresholds": state_shares(metrics, SamplerConfig()),
        "calibrated": state_shares(metrics, cfg),
    }
    print(f"{len(metrics)} tokens from {len(prompts)} prompts on {lm.info.name}")
    print(
        json.dumps(
            {
                k: getattr(cfg, k)
                for k in ("low_ent", "low_vent", "med_ent", "high_ent", "high_vent")
            }
        )
    )
    print(_table(shares))
    print(f"wrote {out}")
    if args.report:
        pct = {
            name: np.percentile(metrics[:, i], [5, 25, 50, 75, 90, 95]).round(4).tolist()
            for i, name in enumerate(METRIC_NAMES)
        }
        Path(args.report).write_text(
            json.dumps(
                {
                    "model": lm.info.name,
                    "tokens": len(metrics),
                    "prompts": len(prompts),
                    "percentiles_5_25_50_75_90_95": pct,
                    "state_shares": shares,
                    "quantiles": {"q_low": args.q_low, "q_med": args.q_med, "q_high": args.q_high},
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
