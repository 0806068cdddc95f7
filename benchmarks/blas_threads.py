"""Which BLAS and thread settings decode fastest here? One process per setting (the BLAS is
preloaded before mlx), settings alternated over rounds; GEMV/GEMM medians and the engine's
greedy decode tok/s on the embedded model.

OpenBLAS from PyPI: the ``scipy-openblas32`` wheel prefixes its symbols (``scipy_cblas_sgemm``),
so MLX cannot pick it up by a preload alone; pass a library that exports ``cblas_sgemm``, e.g.
a two-line shim (see ``SHIM``) built against it:

    uv pip install --target /tmp/sob scipy-openblas32
    echo "$SHIM" > shim.c && gcc -O2 -shared -fPIC shim.c -o libobshim.so \\
        -L/tmp/sob/scipy_openblas32/lib -lscipy_openblas -Wl,-rpath,/tmp/sob/scipy_openblas32/lib
    uv run benchmarks/blas_threads.py --openblas ./libobshim.so --rounds 2
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

RESULTS = Path(__file__).parent / "results" / "blas_threads.json"
SHIM = """typedef int I;
extern void scipy_cblas_sgemm(I,I,I,I,I,I,float,const float*,I,const float*,I,float,float*,I);
void cblas_sgemm(I o,I ta,I tb,I m,I n,I k,float al,const float*a,I lda,const float*b,I ldb,
                 float be,float*c,I ldc){scipy_cblas_sgemm(o,ta,tb,m,n,k,al,a,lda,b,ldb,be,c,ldc);}
"""


def measure() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mlx_entropix  # noqa: F401  (BLAS preload first)
    from mlx_entropix.engine.generate import generate
    from mlx_entropix.io.load import load
    from mlx_entropix.runtime.device import runtime_info

    import mlx.core as mx

    def matmul_ms(m: int, k: int, n: int, reps: int) -> float:
        a, b = mx.random.normal((m, k)), mx.random.normal((n, k))
        mx.eval(a, b)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            mx.eval(a @ b.T)
            times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times)

    row = {
        "blas": runtime_info().blas,
        "gemv_head_ms": matmul_ms(1, 576, 49152, 60),
        "gemv_mlp_ms": matmul_ms(1, 576, 1536, 200),
        "gemm512_ms": matmul_ms(512, 576, 1536, 20),
    }
    lm = load()
    rates = []
    for _ in range(3):
        prompt = "Write a long story about a trip around the world."
        done = list(generate(lm, prompt, mode="greedy", max_tokens=25, seed=1))[-1]
        rates.append(done.decode_tok_s)
    return {**row, "decode_tok_s": statistics.median(rates[1:]), "ttft_s": done.ttft_s}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--openblas", help="a library exporting cblas_sgemm (OpenBLAS or a shim)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        print(json.dumps(measure()))
        return
    settings = [("mkl", {}), ("mkl", {"MKL_NUM_THREADS": "1"}), ("mkl", {"KMP_BLOCKTIME": "0"})]
    if args.openblas:
        settings += [(args.openblas, {}), (args.openblas, {"OPENBLAS_NUM_THREADS": "1"})]
    rows = []
    for _ in range(args.rounds):
        for blas, extra in settings:
            env = {**os.environ, "MLX_ENTROPIX_BLAS": blas, **extra}
            load = os.getloadavg()[0]
            out = subprocess.run([sys.executable, __file__, "--measure"], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            row = {"setting": " ".join([blas, *(f"{k}={v}" for k, v in extra.items())]),
                   "load_avg_1min": load, **json.loads(out.stdout.splitlines()[-1])}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    RESULTS.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
