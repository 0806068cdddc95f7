"""What k hidden sampled rows cost (``engine/agreement.py``): the time from the call to the
done event of a greedy answer with ``confidence_samples`` k against 0, paired (the two run
back to back on the same prompt, in alternating order), over dev's prompts of one format
(raw: few-shot, stopped at a line break, 16 tokens at most; chat: 32 tokens at most).

    uv run benchmarks/confidence_samples_cost.py [--format chat] [--k 4] [--prompts 24]

Prints and writes (JSON) the median per-prompt ratio (k over 0) with a bootstrap 95% interval,
the medians of both, and the median delay of the user's done event after its last token.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate  # noqa: E402
from mlx_entropix.eval.harness import build_prompt, load_items  # noqa: E402
from mlx_entropix.io.load import load  # noqa: E402


def timed(lm, prompt, raw: bool, k: int, seed: int) -> tuple[float, float, object]:
    """Seconds to the done event, seconds from the last token event to it, the done event."""
    t0 = time.perf_counter()
    last = t0
    budget, stop = (16, ["\n"]) if raw else (32, [])
    for ev in generate(lm, prompt, mode="greedy", max_tokens=budget, seed=seed, stop=stop,
                       top_logprobs=2, confidence_samples=k):  # fmt: skip
        if ev.type == "token":
            last = time.perf_counter()
        elif ev.type == "done":
            t = time.perf_counter()
            return t - t0, t - last, ev
    raise RuntimeError("no done event")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--format", choices=("raw", "chat"), default="raw")
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--prompts", type=int, default=24)
    p.add_argument(
        "--out", help="JSON (default benchmarks/results/confidence_samples_cost_<format>.json)"
    )
    args = p.parse_args()
    out = args.out or ROOT / f"benchmarks/results/confidence_samples_cost_{args.format}.json"
    lm = load(None)
    raw = args.format == "raw"
    pool = [i for i in load_items(ROOT / "data/eval/dev.csv", "chat") if i.format == args.format]
    step = max(len(pool) // args.prompts, 1)
    items = pool[::step][: args.prompts]  # evenly over dev's kinds of that format
    prompts = [build_prompt(lm.tokenizer, i, None, []) for i in items]
    timed(lm, prompts[0], raw, args.k, 0)  # warm both paths
    timed(lm, prompts[0], raw, 0, 0)
    rows = []
    for n, (item, prompt) in enumerate(zip(items, prompts, strict=True)):
        order = (0, args.k) if n % 2 == 0 else (args.k, 0)
        got = {k: timed(lm, prompt, raw, k, n) for k in order}
        (t0, lag0, d0), (tk, lagk, dk) = got[0], got[args.k]
        assert d0.text == dk.text  # the hidden rows leave the answer as it was
        rows.append({"category": item.category, "tokens": d0.generated_tokens, "s_k0": t0,
                     "s_k": tk, "lag_k0": lag0, "lag_k": lagk, "agreement": dk.agreement,
                     "confidence_k0": d0.confidence, "confidence_k": dk.confidence})  # fmt: skip
    ratios = np.array([r["s_k"] / r["s_k0"] for r in rows])
    rng = np.random.default_rng(0)
    boot = [np.median(rng.choice(ratios, len(ratios))) for _ in range(2000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    summary = {
        "k": args.k,
        "prompts": len(rows),
        "median_s_k0": statistics.median(r["s_k0"] for r in rows),
        "median_s_k": statistics.median(r["s_k"] for r in rows),
        "median_ratio": float(np.median(ratios)),
        "ratio_ci95": [float(lo), float(hi)],
        "median_done_lag_s_k0": statistics.median(r["lag_k0"] for r in rows),
        "median_done_lag_s_k": statistics.median(r["lag_k"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    Path(out).write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
