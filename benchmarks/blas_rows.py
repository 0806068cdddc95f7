"""Which row counts of a product x(M, K) @ W(N, K).T give the same bits, per MKL mode: the
question behind ``runtime.blas.batch_invariant`` (a request's rows in a shared batch against
the same rows alone), on the model's shapes.

For each M in 1..16, the rows of M-row products (every M-row window of 16 rows, stepping by
M) are compared bitwise with the same rows computed alone (M = 1) and in one 16-row product.
Each MKL mode runs in its own process (MKL reads ``MKL_CBWR`` once).

    uv run benchmarks/blas_rows.py          # ~20 s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "blas_rows.json"
MODES = {"default": None, "strict": "AUTO,STRICT"}
# q/o, k/v, gate/up, down, the head (the embedding, tied)
SHAPES = [(576, 576), (192, 576), (1536, 576), (576, 1536), (49152, 576)]


def classes() -> dict[str, dict[str, str]]:
    """Per shape, per M: "alone" (rows as with M = 1), "16" (as in a 16-row product), both,
    or "mixed" (neither for some rows)."""
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)

    import mlx.core as mx

    out: dict[str, dict[str, str]] = {}
    for n, k in SHAPES:
        w = mx.random.normal((n, k), key=mx.random.key(0))
        x = mx.random.normal((16, k), key=mx.random.key(3))
        alone = mx.concatenate([x[i : i + 1] @ w.T for i in range(16)])
        full = x @ w.T
        row: dict[str, str] = {}
        for m in range(1, 17):
            got = mx.concatenate([x[i : i + m] @ w.T for i in range(0, 16 - 16 % m, m)])
            same = [mx.array_equal(got, ref[: got.shape[0]]).item() for ref in (alone, full)]
            row[str(m)] = {(True, True): "both", (True, False): "alone", (False, True): "16"}.get(
                tuple(same), "mixed"
            )
        out[f"{n}x{k}"] = row
    return out


def main() -> None:
    if "--child" in sys.argv:
        print(json.dumps(classes()))
        return
    result: dict = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": _cpu(), "modes": {}}
    for name, cbwr in MODES.items():
        env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
        if cbwr:
            env["MKL_CBWR"] = cbwr
        done = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                              capture_output=True, text=True)  # fmt: skip
        result["modes"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(name)
        for shape, row in result["modes"][name].items():
            print(f"  {shape:>10}: " + " ".join(f"{m}:{c}" for m, c in row.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1))
    print(f"wrote {RESULTS}")


def _cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                "unknown")  # fmt: skip


if __name__ == "__main__":
    main()
