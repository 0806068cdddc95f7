"""Preload an optimized CBLAS for MLX's CPU backend (Linux), before ``mlx.core`` is imported.

The ``mlx-cpu`` wheel links the netlib reference BLAS (~8 GFLOP/s on a 2-core x86 box).
Loading MKL or OpenBLAS into the global symbol namespace first makes MLX's ``cblas_*`` calls
resolve to it instead (~200+ GFLOP/s): prefill ~20x and decode ~2.5x faster on the CPU.

``MLX_ENTROPIX_BLAS`` chooses: ``auto`` (default: MKL from this environment, then a system
OpenBLAS), ``mkl``, ``openblas``, ``none``, or an explicit path to a shared library.
This module must not import mlx.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "MLX_ENTROPIX_BLAS"


@dataclass(frozen=True)
class BlasChoice:
    name: str  # "mkl", "openblas", "custom", or "bundled" (the wheel's reference BLAS / Accelerate)
    path: str | None
    note: str


def _mkl_candidates() -> list[str]:
    found = []
    for prefix in filter(None, {sys.prefix, sys.base_prefix, os.environ.get("CONDA_PREFIX", "")}):
        found += sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")), reverse=True)
    return found


def _openblas_candidates() -> list[str]:
    dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib"]
    names = [
        "openblas-pthread/libopenblas.so.0",
        "openblas-openmp/libopenblas.so.0",
        "libopenblas.so.0",
        "libopenblas.so",
    ]
    return [str(Path(d) / n) for d in dirs for n in names if (Path(d) / n).exists()]


def _try_load(path: str) -> bool:
    try:
        return hasattr(ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL), "cblas_sgemm")
    except OSError:
        return False


@functools.cache
def preload() -> BlasChoice:
    """Load the chosen BLAS once. Safe to call many times; a no-op off Linux."""
    want = os.environ.get(ENV_VAR, "auto").strip() or "auto"
    if sys.platform != "linux":
        return BlasChoice("bundled", None, "macOS: MLX uses Accelerate/Metal")
    if "mlx.core" in sys.modules:
        return BlasChoice("bundled", None, "mlx.core was imported before the BLAS preload")
    if want == "none":
        return BlasChoice("bundled", None, f"{ENV_VAR}=none: reference BLAS (slow)")

    if want in ("auto", "mkl", "openblas"):
        for name in ("mkl", "openblas") if want == "auto" else (want,):
            for path in _mkl_candidates() if name == "mkl" else _openblas_candidates():
                if _try_load(path):
                    return BlasChoice(name, path, "preloaded")
        note = f"no {'optimized BLAS' if want == 'auto' else want} found: reference BLAS (slow)"
    else:  # an explicit library path
        if _try_load(want):
            return BlasChoice("custom", want, "preloaded")
        note = f"{ENV_VAR}={want} could not be loaded: reference BLAS (slow)"
    return BlasChoice("bundled", None, note)


def batch_invariant(enable: bool = True) -> bool:
    """Ask the BLAS for products whose rows do not depend on how many rows there are; returns
    whether rows are batch-invariant now (measured, not assumed: ``rows_independent``).

    With MKL's default kernels a row of a batched product differs in the last bits from the
    same row alone (a GEMM is not a GEMV): a request in a shared batch would get slightly other
    metrics, once in a long while another token. MKL's strict mode (``MKL_CBWR=AUTO,STRICT``,
    read at MKL's first call: run this before any computation; a user's value is kept) fixes
    that on the Intel (AVX-512) machines measured, one stream ~17-27% slower; on an AMD EPYC
    (AVX2) no setting did, so it is set only where it works (``strict_mode_works``, README)."""
    if enable and "MKL_CBWR" not in os.environ and strict_mode_works():
        os.environ["MKL_CBWR"] = "AUTO,STRICT"
    preload()
    return rows_independent()


def strict_mode_works() -> bool:
    """Whether MKL's strict mode makes a product's rows batch-invariant on this machine. MKL
    reads the mode once, so a child process measures it (a few seconds, once per CPU and MKL
    build). True where it cannot be measured."""
    choice = preload()
    if choice.name != "mkl" or choice.path is None:
        return False  # only MKL reads MKL_CBWR

    def measure() -> bool | None:
        code = "import mlx_entropix.runtime.blas as b; print(int(b.rows_independent()))"
        env = {**os.environ, "MKL_CBWR": "AUTO,STRICT", ENV_VAR: str(choice.path)}
        try:
            run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=300)  # fmt: skip
            return run.stdout.strip().splitlines()[-1] == "1"
        except (OSError, subprocess.SubprocessError, IndexError):
            return None  # unknown: ask for it, as before

    known = measured_once("mkl_strict_mode", measure)
    return True if known is None else known


def measured_once(name: str, measure: Callable[[], bool | None], what: str = "") -> bool | None:
    """``measure()`` (of ``what``), kept in the user's cache per CPU, BLAS build and MKL mode:
    measured once per machine (None is not kept: measured again next time)."""
    choice = preload()
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    cpu = next((line for line in cpuinfo.splitlines() if "model name" in line), "")
    mtime = os.path.getmtime(choice.path) if choice.path and os.path.exists(choice.path) else 0
    key = (f"{cpu.split(':')[-1].strip()} | {choice.path} | {mtime:.0f}"
           f" | {os.environ.get('MKL_CBWR', '')} | {what}")  # fmt: skip
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlx-entropix"
    path = home / f"{name}.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key not in known:
        value = measure()
        if value is None:
            return None
        known[key] = value
        try:
            home.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=1), encoding="utf-8")
        except OSError:
            pass
    return bool(known[key])


@functools.cache
def _threads_api() -> tuple[ctypes._CFuncPtr, int] | None:
    """The loaded BLAS's thread-count setter and its default count (all cores, or what the
    user set in ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS``); None for the bundled BLAS."""
    choice = preload()
    if choice.path is None:
        return None
    lib = ctypes.CDLL(choice.path)
    for setter, getter in (("MKL_Set_Num_Threads", "MKL_Get_Max_Threads"),
                           ("openblas_set_num_threads", "openblas_get_num_threads")):  # fmt: skip
        if hasattr(lib, setter) and hasattr(lib, getter):
            return getattr(lib, setter), int(getattr(lib, getter)())
    return None


def set_threads(n: int | None) -> None:
    """Run the BLAS's next calls on ``n`` threads (None: its default). A no-op without MKL or
    OpenBLAS. Takes effect at the next call, from any thread (MLX calls from its own)."""
    api = _threads_api()
    if api is not None:
        setter, default = api
        setter(default if n is None else max(1, min(n, default)))


@functools.cache
def rows_independent() -> bool:
    """Whether each row of a matrix product is bitwise the same whatever the rows around it
    (1 to 7 rows, first and last positions, against 8), measured on a small layer's shape."""
    import mlx.core as mx  # only after the preload above

    w = mx.random.normal((576, 1536), key=mx.random.key(0))
    x = mx.random.normal((8, 576), key=mx.random.key(1))
    full = x @ w
    parts = [(x[i : i + rows] @ w, full[i : i + rows]) for rows in range(1, 8)
             for i in sorted({0, 8 - rows})]  # fmt: skip
    return all(mx.array_equal(a, b).item() for a, b in parts)
