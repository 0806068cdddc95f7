"""The CLI's single stream in two source trees, alternated in one run: decode tok/s and time to
first token as the CLI reports them (``--json``: the ``DoneEvent``), medians over repeats, and
the median of the per-repeat ratios (this tree / the other, both measured seconds apart).

    git archive main | tar -x -C /tmp/base       # the tree to compare against
    nice -n 5 uv run benchmarks/cli_speed.py --base /tmp/base --repeats 7

Each run is a fresh process (``mlx_main.py``, the embedded model) with the same prompt, seed and
``--max-tokens``; this tree's virtual environment runs both (the other tree's package is found
first on its own ``sys.path``). Model load time is not in either figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {
    "short": "Write a short story about a lighthouse keeper.",
    "long": "Summarise this text. " + "The river runs past the old stone mill. " * 50,
}


def run(tree: Path, prompt: str, tokens: int, mode: str) -> dict[str, float]:
    args = [sys.executable, str(tree / "mlx_main.py"), "--input", prompt, "--seed", "7",
            "--max-tokens", str(tokens), "--json"]  # fmt: skip
    args += [f"--{mode}"] if mode != "entropix" else []
    env = {**os.environ, "MLX_ENTROPIX_KERNEL_WARMUP": "0", "PYTHONPATH": str(tree)}
    out = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tree, check=True)
    done = json.loads(out.stdout.strip().splitlines()[-1])
    assert done["type"] == "done", out.stdout[-500:]
    return {"ttft_s": done["ttft_s"], "decode_tok_s": done["decode_tok_s"],
            "tokens": done["generated_tokens"], "prompt_tokens": done["prompt_tokens"]}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="the other source tree")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--mode", default="entropix", choices=["entropix", "normal", "greedy"])
    p.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    args = p.parse_args()
    trees = {"this": ROOT, "base": args.base.resolve()}
    result: dict = {"load_start": os.getloadavg(), "runs": {}}
    for name in args.prompts:
        runs: dict[str, list[dict[str, float]]] = {"this": [], "base": []}
        for i in range(args.repeats):
            order = ["this", "base"] if i % 2 == 0 else ["base", "this"]  # alternate who is first
            for tree in order:
                runs[tree].append(run(trees[tree], PROMPTS[name], args.tokens, args.mode))
        summary = {}
        for key in ("decode_tok_s", "ttft_s"):
            med = {t: statistics.median(r[key] for r in runs[t]) for t in runs}
            ratios = [a[key] / b[key] for a, b in zip(runs["this"], runs["base"], strict=True)]
            summary[key] = {**med, "ratio_median": statistics.median(ratios),
                            "ratio_min": min(ratios), "ratio_max": max(ratios)}  # fmt: skip
        result["runs"][name] = {"summary": summary, "raw": runs}
        print(name, runs["this"][0]["prompt_tokens"], "prompt tokens",
              json.dumps(summary, indent=1), flush=True)  # fmt: skip
    result["load_end"] = os.getloadavg()
    result["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(json.dumps({k: result[k] for k in ("load_start", "load_end", "finished")}))


if __name__ == "__main__":
    main()
