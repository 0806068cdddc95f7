"""Continuous batching under ``mlx.launch``: the embedded model split over 2 local ranks (ring
backend on 127.0.0.1), 4 concurrent requests against the same requests served alone.

Every rank runs rank 0's schedule (``engine/replica.py``): rank 0 submits and pulls the
requests, as the server's worker does; rank 1 replays its calls. Per round: request 0 alone,
the 4 requests submitted at once and pulled round-robin, then each of the 4 alone; entropix,
32 tokens, seeds 100 + i. Reports tokens/s (all tokens / wall time) and how many streams equal
the same request served alone (tokens).

    uv run benchmarks/launch_batch.py                # ~3 min on a 2-core CPU
    uv run benchmarks/launch_batch.py --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "launch_batch.json"
sys.path.insert(0, str(ROOT / "benchmarks"))
PROMPTS: list[str] = importlib.import_module("load_client").PROMPTS
serve = importlib.import_module("family_batch").serve  # submit at once, pull round-robin


def rank_main(args: argparse.Namespace) -> None:
    """One rank's part (run by ``mlx.launch``)."""
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.replica import ReplicatedDecoder
    from mlx_entropix.io.load import load
    from mlx_entropix.runtime.distributed import init_group

    group = init_group()
    assert group is not None, "run under mlx.launch"
    lm = load(None, group=group)
    decoder = ReplicatedDecoder(lm, group)
    if group.rank() != 0:
        decoder.follow()
        return
    prompts = PROMPTS[: args.requests]
    serve(decoder, lm, prompts[:2], 4)  # warm-up: kernels and batch shapes
    rounds = []
    for _ in range(args.rounds):
        t_one, (one,) = serve(decoder, lm, prompts[:1], args.max_tokens)
        t_all, streams = serve(decoder, lm, prompts, args.max_tokens)
        alone = [serve(decoder, lm, [p], args.max_tokens, first=i)[1][0]
                 for i, p in enumerate(prompts)]  # fmt: skip
        rounds.append({
            "single_tok_s": len(one) / t_one,
            "concurrent_tok_s": sum(map(len, streams)) / t_all,
            "identical_to_alone": sum(a == b for a, b in zip(streams, alone, strict=True)),
        })  # fmt: skip
    decoder.close()
    Path(args.out).write_text(json.dumps({"rounds": rounds, "plan": lm.info.sharding.note}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--out", help=argparse.SUPPRESS)  # set when run as a rank
    args = p.parse_args(argv)
    if args.out:
        rank_main(args)
        return 0
    out = RESULTS.with_suffix(".rank0.json")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = Path(sys.executable).with_name("mlx.launch")
    cmd = [str(launch), "-n", str(args.ranks), "--backend", "ring", "--starting-port",
           str(port), "--python", sys.executable, __file__, "--out", str(out),
           "--rounds", str(args.rounds), "--requests", str(args.requests),
           "--max-tokens", str(args.max_tokens)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.runtime.distributed import launch_status

    with subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True) as proc:
        lines = []
        for line in proc.stderr:  # type: ignore[union-attr]  # shown as it comes, and kept
            sys.stderr.write(line)
            lines.append(line)
    if status := proc.returncode or launch_status("".join(lines)):  # mlx.launch's own is 0
        print(f"launch_batch.py: a rank failed (exit {status}), above", file=sys.stderr)
        return status if status > 0 else 1
    found = json.loads(out.read_text())
    out.unlink()
    rounds = found["rounds"]
    summary = {
        "single_tok_s": statistics.median(r["single_tok_s"] for r in rounds),
        "concurrent_tok_s": statistics.median(r["concurrent_tok_s"] for r in rounds),
        "identical_to_alone": min(r["identical_to_alone"] for r in rounds),
    }
    summary["ratio"] = summary["concurrent_tok_s"] / summary["single_tok_s"]
    report = {
        "what": f"the embedded model split over {args.ranks} ranks (mlx.launch, ring, loopback), "
        "every rank running rank 0's schedule (engine/replica.py)",
        "plan": found["plan"],
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "load_average_after": list(os.getloadavg()),
        "summary": summary,
        "goal": "4 concurrent >= 2.5x one alone, each stream equal to itself alone",
        "rounds": rounds,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1))
    print(f"{'':>24} {'1 alone tok/s':>14} {'4 at once tok/s':>16} {'ratio':>6} {'equal':>6}")
    print(f"{f'{args.ranks} ranks':>24} {summary['single_tok_s']:14.1f} "
          f"{summary['concurrent_tok_s']:16.1f} {summary['ratio']:6.2f} "
          f"{summary['identical_to_alone']:>4}/{args.requests}")  # fmt: skip
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
