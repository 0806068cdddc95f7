"""Fork requests in the shared batch (issue 20, "fork as a strategy of the scheduler"): 4
concurrent fork requests against one alone, in one process.

Each fork request (mode fork, the default fork: 3 branches at the first token, greedy to the
end of the budget) is its own rows of one ``BatchDecoder``: its branches step with the other
requests' rows. Per round: request 0 alone, then the 4 requests submitted at once and pulled
round-robin (as the server's worker does), then each of the 4 alone (the ``before_run``
figures of older results: request 0 through ``generate._run``, the second decode path, since
removed). Reports tokens/s (the streams' tokens / wall time; the branches computed ~3x as many)
and how many streams equal the same request served alone (tokens, fork event).

    uv run benchmarks/fork_batch.py                # ~3 min on a 2-core CPU
    uv run benchmarks/fork_batch.py --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fork_batch.json"
PROMPTS: list[str] = importlib.import_module("load_client").PROMPTS
TIMES = {"elapsed_s", "ttft_s", "total_s", "prefill_tok_s", "decode_tok_s", "cached_tokens"}


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def since(t0: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds since ``t0``: the CPU time (all threads) does not count a pause
    (the machine is shared; a stopped process still ages in wall time)."""
    now = clock()
    return now[0] - t0[0], now[1] - t0[1]


def serve(decoder, lm, prompts: list[str], max_tokens: int) -> tuple[tuple, list[list]]:
    """Submit fork requests for ``prompts`` at once, pull them round-robin: ((wall, CPU)
    seconds, each stream's events but the timings)."""
    from mlx_entropix.engine.generate import prepare_prompt

    t0 = clock()
    pulls, out = {}, {}
    for i, p in enumerate(prompts):
        ids = prepare_prompt(lm, p, max_tokens=max_tokens)
        pulls[i], out[i] = (
            decoder.pull(decoder.submit(ids, [("fork", 0)], max_tokens=max_tokens)),
            [],
        )
    while pulls:
        for i, pull in list(pulls.items()):
            item = next(pull, "end")
            if item == "end":
                del pulls[i]
            elif item is not None:
                out[i].append(item[1].model_dump(exclude=TIMES))
    return since(t0), [out[i] for i in range(len(prompts))]


def tokens(events: list[dict]) -> int:
    return sum(e["type"] == "token" for e in events)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--model", help="model path (default: the embedded SmolLM2-135M)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.io.load import load
    from mlx_entropix.runtime.blas import batch_invariant

    invariant = batch_invariant()
    lm = load(args.model)
    prompts = PROMPTS[: args.requests]
    decoder = BatchDecoder(lm)
    serve(decoder, lm, prompts[:2], 4)  # warm-up (compiles), not timed
    rounds = []
    for _ in range(args.rounds):
        t_one, one = serve(decoder, lm, prompts[:1], args.max_tokens)
        t_all, together = serve(decoder, lm, prompts, args.max_tokens)
        alone = [serve(decoder, lm, [p], args.max_tokens) for p in prompts]
        n_all = sum(tokens(ev) for ev in together)
        row = {}
        for clock_name, c in (("", 0), ("cpu_", 1)):  # tokens per wall second, per CPU second
            row |= {
                f"single_{clock_name}tok_s": tokens(one[0]) / t_one[c],
                f"concurrent_{clock_name}tok_s": n_all / t_all[c],
                f"one_after_another_{clock_name}tok_s": n_all / sum(t[c] for t, _ in alone),
            }
        row |= {
            "identical_to_alone": sum(a[1][0] == b for a, b in zip(alone, together, strict=True)),
            "same_tokens_as_alone": sum(
                [e.get("id") for e in a[1][0]] == [e.get("id") for e in b]
                for a, b in zip(alone, together, strict=True)
            ),
            "branch_tokens_computed": sum(
                e["tokens_computed"] for ev in together for e in ev if e["type"] == "fork"
            ),  # fmt: skip
        }
        row["ratio"] = row["concurrent_tok_s"] / row["single_tok_s"]
        row["cpu_ratio"] = row["concurrent_cpu_tok_s"] / row["single_cpu_tok_s"]
        rounds.append(row)
        print(json.dumps(row), flush=True)
    # Best of the rounds (a paused or crowded round is slower, never faster), and the median.
    summary = {k: max(r[k] for r in rounds) for k in rounds[0] if k.endswith("tok_s")}
    summary["ratio_best"] = summary["concurrent_tok_s"] / summary["single_tok_s"]
    summary["cpu_ratio_best"] = summary["concurrent_cpu_tok_s"] / summary["single_cpu_tok_s"]
    summary |= {
        f"{k}_median": statistics.median(r[k] for r in rounds) for k in ("ratio", "cpu_ratio")
    }
    summary |= {
        k: min(r[k] for r in rounds) for k in ("identical_to_alone", "same_tokens_as_alone")
    }
    report = {
        "what": f"{args.requests} concurrent fork requests (default fork) in one BatchDecoder",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "batch_invariant": invariant,
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "goal": f"{args.requests} concurrent >= 2.5x one alone, each stream equal to itself alone",
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{'(best of rounds)':28}{'tok/s':>8}{'tok/CPU-s':>10}")
    for k in ("single", "concurrent", "one_after_another"):
        print(f"{k:28}{summary[k + '_tok_s']:8.1f}{summary[k + '_cpu_tok_s']:10.1f}")
    n, load_1m = args.requests, os.getloadavg()[0]
    print(f"ratio (concurrent / single): wall {summary['ratio_best']:.2f}x (median "
          f"{summary['ratio_median']:.2f}x), CPU {summary['cpu_ratio_best']:.2f}x (median "
          f"{summary['cpu_ratio_median']:.2f}x); identical to alone: "
          f"{summary['identical_to_alone']}/{n} (tokens: {summary['same_tokens_as_alone']}/{n}); "
          f"load {load_1m:.1f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
