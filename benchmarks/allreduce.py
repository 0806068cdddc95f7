"""All-reduce latency and bandwidth of MLX's distributed engine, as decode sees it.

Run under mlx.launch (two ranks on this machine over loopback, the ring backend):

    .venv/bin/mlx.launch -n 2 --backend ring --python .venv/bin/python benchmarks/allreduce.py

Each size is all-summed ``--iters`` times, one evaluated collective after another (decode
cannot batch them: each layer's all-reduce waits for the layer before it). Rank 0 writes the
minimum (the uncontended floor), median and 90th-percentile time per all-reduce to
benchmarks/results/allreduce.json; docs/DISTRIBUTED.md's per-token estimates start from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)

import mlx.core as mx

RESULTS = Path(__file__).resolve().parent / "results" / "allreduce.json"
# (label, elements, dtype): one token id; the decode-step hidden state of SmolLM2-135M (576)
# and of a 70B Llama (8192) in fp32 and fp16; then larger payloads for the bandwidth.
SIZES = [
    ("token id (int32)", 1, mx.int32),
    ("hidden 576 fp32 (SmolLM2-135M, 1 token)", 576, mx.float32),
    ("hidden 8192 fp16 (Llama-3-70B, 1 token)", 8192, mx.float16),
    ("hidden 8192 fp32", 8192, mx.float32),
    ("64 Ki fp32 (256 KiB)", 65536, mx.float32),
    ("1 Mi fp32 (4 MiB)", 1 << 20, mx.float32),
]


def time_all_sums(group: mx.distributed.Group, iters: int) -> list[list[float]]:
    """Seconds per all-reduce, for each of ``SIZES``. The sizes take turns, round after round,
    so that a busy spell of the machine (other processes on its cores) hits them all alike."""
    xs = [mx.ones((n,), dtype=dtype) for _, n, dtype in SIZES]
    mx.eval(xs)
    for x in xs:  # warm up the connections and buffers
        for _ in range(5):
            mx.eval(mx.distributed.all_sum(x, group=group))
    times: list[list[float]] = [[] for _ in xs]
    for _ in range(iters):
        for x, t in zip(xs, times, strict=True):
            start = time.perf_counter()
            mx.eval(mx.distributed.all_sum(x, group=group))
            t.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=200, help="rounds over all sizes")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    group = mx.distributed.init()
    if group.size() < 2:
        raise SystemExit("run under mlx.launch with at least 2 ranks (see the docstring)")
    rows = []
    for (label, n, dtype), t in zip(SIZES, time_all_sums(group, args.iters), strict=True):
        t = sorted(t)
        nbytes = n * dtype.size
        median = statistics.median(t)
        rows.append(
            {
                "payload": label,
                "bytes": nbytes,
                "iters": len(t),
                "median_us": round(median * 1e6, 1),
                "p90_us": round(t[int(0.9 * (len(t) - 1))] * 1e6, 1),
                "min_us": round(t[0] * 1e6, 1),
                "algbw_MBps_at_min": round(nbytes / t[0] / 1e6, 1),
            }
        )
    if group.rank() == 0:
        result = {
            "ranks": group.size(),
            "backend": os.environ.get("MLX_ENTROPIX_BENCH_BACKEND", "ring (loopback)"),
            "device": str(mx.default_device()),
            "mlx": mx.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "note": "each all-reduce evaluated on its own, as decode's per-layer reductions are",
            "results": rows,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        for r in rows:
            print(f"{r['payload']:<42} min {r['min_us']:>8.1f} us  median {r['median_us']:>9.1f}"
                  f"  p90 {r['p90_us']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
