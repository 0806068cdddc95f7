"""Fit the whole entropix policy (coefficients, not only thresholds) to a model's own metric
distributions, and evaluate a small grid of the free choices on the DEV split.

    uv run benchmarks/policy_search.py fit --metrics /tmp/probe_dev.json \\
        --band 0.2,0.67 --out cfg.json
    uv run benchmarks/policy_search.py eval data/eval/dev.csv cfg1.json cfg2.json \\
        --greedy /tmp/dev_greedy.json --seeds 1

The fitting rule (``fit``), from the metrics of every greedy step on the dev prompts
(``cot_probe.py`` records them) and the thresholds of the base config (quantile calibration):
- adaptive temperature, T = T0 (1 + a (H + V)) with the attention and agreement terms set to 0:
  a and T0 solve T(u10) = T_lo, T(u90) = T_hi, where u10/u90 are the 10th/90th percentiles of
  H + V over the steps the thresholds call adaptive and [T_lo, T_hi] is the chosen band. So the
  middle 80% of adaptive tokens get temperatures inside the band, none pinned at a clip.
- every other metric gain is divided by that metric's median, so a typical token gets the
  factor the reference meant: fork T = T0 (1.2 + 0.3 ints/med(ints)) = 1.5 T0 at the median,
  treading T = T0 (1.3 + 0.2 aent/med(aent)), mist T offset 2.0 and gain 0.5/med(avent),
  adaptive top_k gain 0.3/med(ints), top_p gain 0.1/med(avent), mist top_p gain 0.2/med(aent).
- adaptive min_p = min_p (1 - a_mp (H + V)) with a_mp = 0.5/u90: at most halved at u90 instead
  of at the 0.01 clip for every token.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401
from mlx_entropix.config import CONFIG_DIR, SamplerConfig  # noqa: E402
from mlx_entropix.eval.harness import engine_generate_fn, load_items, run_eval  # noqa: E402
from mlx_entropix.eval.stats import _item_scores, paired_difference, wilson  # noqa: E402
from mlx_entropix.uncertainty.sampler import classify_states  # noqa: E402

import numpy as np  # noqa: E402

VOCAB = 49152  # SmolLM2's vocabulary
SHIPPED = CONFIG_DIR / "smollm2-135m-instruct.json"


def dev_metrics(path: str) -> np.ndarray:
    recs = json.loads(Path(path).read_text())["records"]
    return np.array([m for r in recs for m in r["metrics"]], dtype=float)


def fit(metrics: np.ndarray, base: SamplerConfig, band: tuple[float, float], min_p: float,
        n_samples: int, no_mist: bool = False) -> tuple[SamplerConfig, dict]:  # fmt: skip
    states = np.array(classify_states(metrics.tolist(), base))
    ada = metrics[states == "adaptive"]
    u = ada[:, 0] + ada[:, 1]
    u10, u90 = (float(np.quantile(u, q)) for q in (0.1, 0.9))
    t_lo, t_hi = band
    r = t_hi / t_lo
    a = (r - 1) / (u90 - r * u10)
    if a <= 0:
        raise ValueError("band too wide for this spread of H + V")
    t0 = t_lo / (1 + a * u10)
    med = {name: float(np.median(metrics[:, i])) for i, name in enumerate(
        ("ent", "vent", "aent", "avent", "agr", "ints"))}  # fmt: skip
    cfg = base.merged(
        {
            # "mist" (resampling) samples at T >= 2.0, a floor hard-coded in the engine: with
            # no_mist high_ent moves to log2(vocab), the largest entropy a distribution over
            # the vocabulary can have, so it is never exceeded: those tokens fall in
            # "exploring" (fork T ~ 1.5 T0) and "treading" never fires.
            **({"high_ent": math.ceil(math.log2(VOCAB) * 100) / 100} if no_mist else {}),
            "temperature": round(t0, 4),
            "min_p": min_p,
            "n_adaptive_samples": n_samples,
            "ada_temp_logits": round(a, 4),
            "ada_temp_attn": 0.0,
            "ada_temp_agree": 0.0,
            "ada_min_p": round(0.5 / u90, 4),
            "ada_top_p": round(0.1 / med["avent"], 4),
            "ada_top_k_int": round(0.3 / med["ints"], 4),
            "ada_top_k_agree": 0.0,
            "lehv_interaction_strength_coef": round(0.3 / med["ints"], 4),
            "helv_attn_ent_coef": round(0.2 / med["aent"], 4),
            "hehv_attn_ent_coef": round(0.2 / med["aent"], 4),
            "hehv_attn_vent_coef": round(0.5 / med["avent"], 4),
        }
    )
    info = {"u10": u10, "u90": u90, "n_steps": len(metrics), "n_adaptive": int(len(ada)),
            "medians": med, "band": band}  # fmt: skip
    return cfg, info


def evaluate_configs(
    csv: str, configs: list[str], greedy_json: str, seeds: int, max_tokens: int, formats: str
):
    from mlx_entropix.io.load import load

    items = [it for it in load_items(csv) if it.format in formats.split(",")]
    greedy = _item_scores(json.loads(Path(greedy_json).read_text())["records"], "greedy")
    lm = load(None)
    for path in configs:
        cfg = SamplerConfig.from_file(path)
        gen = engine_generate_fn(lm, max_tokens=max_tokens, config=cfg)
        recs = run_eval(items, gen, modes=["entropix"], seeds=seeds, progress=False)
        sc = _item_scores(recs, "entropix")
        common = sorted(sc)
        acc = sum(sc.values()) / len(sc)
        lo, hi = wilson(acc, len(sc))
        d = paired_difference([sc[i] for i in common], [greedy[i] for i in common])
        states: dict[str, int] = {}
        for r in recs:
            for k, v in r["state_counts"].items():
                states[k] = states.get(k, 0) + v
        secs = sum(r["seconds"] for r in recs) / len(recs)
        toks = sum(r["tokens"] for r in recs) / len(recs)
        row = {"config": path, "csv": csv, "seeds": seeds, "accuracy": acc, "ci95": [lo, hi],
               "vs_greedy": d, "greedy_accuracy": sum(greedy[i] for i in common) / len(common),
               "s_per_answer": secs, "mean_tokens": toks, "states": states}  # fmt: skip
        print(json.dumps(row), flush=True)
        out = Path(path).with_suffix(f".{Path(csv).stem}.records.json")
        out.write_text(json.dumps(recs))


def main() -> int:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--metrics", required=True, help="cot_probe.py JSON of the dev split")
    f.add_argument("--base", default=str(SHIPPED), help="config whose thresholds are kept")
    f.add_argument("--band", default="0.2,0.67", help="T_lo,T_hi of adaptive T at u10,u90")
    f.add_argument("--min-p", type=float, default=0.05)
    f.add_argument("--n", type=int, default=5)
    f.add_argument("--no-mist", action="store_true", help="disable the T>=2 resampling state")
    f.add_argument("--out", required=True)
    e = sub.add_parser("eval")
    e.add_argument("csv")
    e.add_argument("configs", nargs="+")
    e.add_argument("--greedy", required=True, help="eval.py JSON with greedy records (same csv)")
    e.add_argument("--seeds", type=int, default=1)
    e.add_argument("--max-tokens", type=int, default=16)
    e.add_argument("--formats", default="raw,chat", help="only items of these formats")
    args = p.parse_args()
    if args.cmd == "fit":
        band = tuple(float(x) for x in args.band.split(","))
        cfg, info = fit(dev_metrics(args.metrics), SamplerConfig.from_file(args.base), band,
                        args.min_p, args.n, args.no_mist)  # fmt: skip
        cfg.to_file(args.out)
        print(json.dumps(info))
        return 0
    evaluate_configs(args.csv, args.configs, args.greedy, args.seeds, args.max_tokens, args.formats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
