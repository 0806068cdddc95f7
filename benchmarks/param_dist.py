"""Distribution of the sampling parameters the entropix policy actually uses, per state.

Runs a few prompts in entropix mode and summarises ``event.params`` (T, top_p, top_k, min_p) per
``event.state``: n, min / p10 / median / p90 / max.

    uv run benchmarks/param_dist.py [--config FILE] [--seed 3] [--max-tokens 40]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401
from mlx_entropix.config import SamplerConfig  # noqa: E402
from mlx_entropix.engine.generate import generate  # noqa: E402
from mlx_entropix.io.load import load  # noqa: E402

import numpy as np  # noqa: E402

PROMPTS = (
    "What is the capital of Iceland? Answer with the city name only.",
    "Sam has 4 marbles and gives away 1. How many marbles are left?",
    "Which number is larger, 9.9 or 9.11?",
    "Write a haiku about autumn.",
)
PARAMS = ("temperature", "top_p", "top_k", "min_p")


def table(events: list) -> str:
    by_state: dict[str, list] = defaultdict(list)
    for e in events:
        by_state[e.state].append(e.params)
    lines = [
        "| state | n | param | min | p10 | median | p90 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for state, ps in sorted(by_state.items()):
        for name in PARAMS:
            x = np.array([getattr(p, name) for p in ps], dtype=float)
            q = np.quantile(x, [0, 0.1, 0.5, 0.9, 1])
            lines.append(
                f"| {state} | {len(ps)} | {name} | " + " | ".join(f"{v:.3g}" for v in q) + " |"
            )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--config")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=40)
    args = p.parse_args()
    lm = load(None)
    cfg = SamplerConfig.from_file(args.config) if args.config else None
    everything = []
    for i, prompt in enumerate(PROMPTS):
        evs = [
            e
            for e in generate(lm, prompt, mode="entropix", config=cfg, max_tokens=args.max_tokens,
                              seed=args.seed, top_logprobs=0)
            if e.type == "token"
        ]  # fmt: skip
        text = "".join(e.text for e in evs)
        print(f"\n### {prompt!r} (seed {args.seed}): {text!r}\n")
        print(table(evs))
        if i == 0:
            everything_first = evs
        everything += evs
    print("\n### all prompts together\n")
    print(table(everything))
    del everything_first
    return 0


if __name__ == "__main__":
    sys.exit(main())
