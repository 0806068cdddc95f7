"""The one loop against the old one, in one process: a CLI request through the decoder
(``generate_rows``, what every front end now uses) and through ``generate._run`` (the per-request
loop the CLI used before issue 20; it now serves only fork mode, unbatchable families and
``mlx.launch``), alternating, the same request (entropix, seed 7) at three prompt lengths.

    uv run benchmarks/loop_ab.py                      # ~4 min on a 2-core CPU
    uv run benchmarks/loop_ab.py --tokens 48 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "loop_ab.json"
MILL = "The river runs past the old stone mill. "
PROMPTS = {
    "short": "Write a short story about a lighthouse keeper.",
    "long": "Summarise this text. " + MILL * 50,
    "longer": "Summarise this text. " + MILL * 150,
}


def timed(items) -> tuple[float, float]:
    """(time to first token, decode tokens/s after it) of an event stream."""
    t0, times = time.perf_counter(), []
    for item in items:
        if item is not None and item[1].type == "token":
            times.append(time.perf_counter())
    return times[0] - t0, (len(times) - 2) / (times[-1] - times[1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=48)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.generate import _run, generate_rows
    from mlx_entropix.engine.request import prepare_prompt
    from mlx_entropix.io.load import load

    lm = load(None)
    loops = {
        "decoder": lambda ids: generate_rows(lm, ids, modes=["entropix"], seeds=[7],
                                             max_tokens=args.tokens, idle=True),
        "_run": lambda ids: _run(lm, ids, [("entropix", 7)], lm.default_config, args.tokens,
                                 (), 5, None, "chat"),
    }  # fmt: skip
    table = {}
    for name, text in PROMPTS.items():
        ids = prepare_prompt(lm, text)
        runs: dict[str, list] = {loop: [] for loop in loops}
        for i in range(args.repeats + 1):  # the first round warms up, untimed
            for loop in list(loops)[:: 1 if i % 2 else -1]:
                got = timed(loops[loop](ids))
                if i:
                    runs[loop].append(got)
        row: dict = {"prompt_tokens": len(ids)}
        for k, label in enumerate(("ttft_s", "decode_tok_s")):
            for loop, got in runs.items():
                row[f"{loop} {label}"] = statistics.median(g[k] for g in got)
            ratios = [d[k] / s[k] for d, s in zip(runs["decoder"], runs["_run"], strict=True)]
            row[f"decoder/_run {label} (median of pairs)"] = statistics.median(ratios)
        table[name] = row
        print(name, json.dumps(row), flush=True)
    report = {"what": "decoder (one loop) vs _run, one CLI request", "args": vars(args),
              "load_average_after": os.getloadavg(), "results": table}  # fmt: skip
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
