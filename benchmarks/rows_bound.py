"""How much can batching gain here at most? A decode step's weight products alone, M rows
against one, on the embedded model's own weights (every layer's q/k/v/o, gate/up/down and the
head; no attention, norms, metrics or sampling): the engine's step cannot cost less than
these, so ``M / (t_M / t_one)`` bounds M streams' aggregate throughput over one stream's
(issue 20's goal: 8 streams at least 5x one). ``t_one`` is a lone row's products as the engine
computes them: the faster of one row and two (``models.two_rows``: a lone row beside a copy of
itself, where the BLAS's two-row kernel is the faster); the products here are the plain ones.
The engine's own step times for comparison come from ``continuous_batching.py``.

On a CPU a one-row product streams the weights (memory-bound) while M rows also pay M times
the arithmetic of a small-M GEMM; on a GPU the same M rows cost close to one row.

    uv run benchmarks/rows_bound.py                  # ~1 min on a 2-core CPU
    uv run benchmarks/rows_bound.py --rows 1 3 8 12 --repeats 31
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["MLX_ENTROPIX_TWO_ROWS"] = "0"  # the plain products: M rows are M rows

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.io.load import load  # noqa: E402
from mlx_entropix.runtime.device import runtime_info  # noqa: E402

import mlx.core as mx  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "rows_bound.json"


def products(model, x: mx.array) -> mx.array:
    """The step's weight products in order, each feeding the next (one lazy graph)."""
    for layer in model.layers:
        a, m = layer.self_attn, layer.mlp
        q, k, v = a.q_proj(x), a.k_proj(x), a.v_proj(x)
        kv = mx.concatenate([k, v], axis=-1)  # stands in for attention: the shapes flow on
        x = x + a.o_proj(q + mx.pad(kv, [(0, 0), (0, q.shape[-1] - kv.shape[-1])]))
        x = x + m.down_proj(m.gate_proj(x) * m.up_proj(x))
    return model.head(x)


def median_ms(model, rows: list[int], repeats: int) -> dict[int, float]:
    """Per row count, the median ms of ``repeats`` products, the counts interleaved (a
    background job or the VM's drift then weighs on every count alike)."""
    xs = {m: mx.random.normal((m, model.args.hidden_size)) * 0.1 for m in rows}
    mx.eval(xs)
    times: dict[int, list[float]] = {m: [] for m in rows}
    for i in range(repeats + 3):
        for m in rows:
            start = time.perf_counter()
            mx.eval(products(model, xs[m]))
            if i >= 3:  # warm-up
                times[m].append(time.perf_counter() - start)
    return {m: statistics.median(t) * 1e3 for m, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 3, 4, 8, 12, 16],
                    help="row counts (1 and 2 are always measured)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=21)
    args = ap.parse_args()
    lm = load()
    lm.work_phase(False)  # the decode step's BLAS threads (one, on the CPU)
    ms = median_ms(lm.model, sorted({1, 2, *args.rows}), args.repeats)
    one = min(ms[1], ms[2])  # a lone row's products as the engine runs them
    print(f"one row alone: {ms[1]:.2f} ms, beside a copy of itself: {ms[2]:.2f} ms")
    print(f"{'rows':>5} {'ms':>8} {'x one row':>10} {'bound (rows / cost)':>20}")
    table = []
    for m, t in ms.items():
        table.append({"rows": m, "ms": round(t, 2), "cost": round(t / one, 3),
                      "bound": round(m * one / t, 2)})  # fmt: skip
        print(f"{m:>5} {t:8.2f} {t / one:10.2f} {m * one / t:20.2f}")
    info = runtime_info()
    out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": info.device, "blas": info.blas,
           "repeats": args.repeats, "one_row_ms": round(ms[1], 2),
           "one_row_as_two_ms": round(ms[2], 2), "table": table}  # fmt: skip
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
