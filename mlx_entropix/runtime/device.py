"""Which device runs the model, in which dtype, and a report of it for ``--info``.

MLX picks Metal on Apple Silicon, CUDA with the ``mlx[cuda*]`` wheels, else the CPU. On the CPU,
fp32 with an optimized BLAS beats both MLX's quantized matmul and fp16/bf16 (measured on a 2-core
x86: 29 vs 9 vs 5-9 tok/s), so quantized weights are dequantized to fp32 there. On Metal they stay
quantized (less memory traffic is what makes decode fast there). On CUDA they are dequantized to
fp16: MLX 0.32's CUDA quantized product of more than one row builds a kernel for each new row
count at first use, 23-26 s each (H200, ``benchmarks/README.md`` "CUDA"), so every new prompt
length or batch size would stall for that long; ``MLX_ENTROPIX_DTYPE=quantized`` keeps them (a
model whose fp16 weights do not fit the GPU).
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import blas, kernels

_blas = blas.preload()

import mlx.core as mx  # noqa: E402  (after the BLAS preload, on purpose)

ENV_DEVICE = "MLX_ENTROPIX_DEVICE"  # "cpu" or "gpu": force a device
ENV_DTYPE = "MLX_ENTROPIX_DTYPE"  # "float32", "float16", "bfloat16" or "quantized"
ENV_COMPILE = "MLX_ENTROPIX_COMPILE"  # "0" runs the per-token functions uncompiled
ENV_TWO_ROWS = "MLX_ENTROPIX_TWO_ROWS"  # "0" never, "1" always, unmeasured (``two_rows_rule``)


def backend() -> str:
    """ "metal", "cuda" or "cpu": what the default device really is."""
    if mx.default_device() == mx.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda" if mx.cuda.is_available() else "cpu"


def select_device() -> str:
    """Apply ``MLX_ENTROPIX_DEVICE`` if set, then return the backend in use."""
    want = _env_choice(ENV_DEVICE, ("cpu", "gpu"))
    if want:
        mx.set_default_device(getattr(mx, want))
    return backend()


def _env_choice(name: str, allowed: tuple[str, ...]) -> str:
    """The variable's value ("" unset); another value is an error, not silently the default
    (a typo such as ``fp16`` would run in fp32 and the banner would show the typo).
    ``io.load`` turns the ValueError into a ModelLoadError."""
    want = os.environ.get(name, "").strip().lower()
    if want and want not in allowed:
        raise ValueError(f"{name}={want!r} is not one of {', '.join(allowed)}")
    return want


def compute_dtype(quantized: bool) -> str:
    """The weight format to run in on this device: "quantized" or a float dtype name."""
    want = _env_choice(ENV_DTYPE, ("float32", "float16", "bfloat16", "quantized"))
    if want:
        return want
    name = backend()
    if name == "cpu":
        return "float32"
    return "quantized" if quantized and name == "metal" else "float16"


@functools.cache
def _compile_probe() -> tuple[bool, str]:
    """Compile and run a small fused graph once: (works, how)."""
    fused = backend() != "cpu" or shutil.which("g++") is not None
    try:
        probe = mx.compile(lambda x: mx.exp(x * 0.5) + 1.0)
        mx.eval(probe(mx.ones((4,))))
    except Exception as err:  # a compiler that is present but fails: run uncompiled
        return False, f"off: mx.compile failed here ({type(err).__name__}: {err})"
    if fused:
        how = "fused C++ kernels (g++)" if backend() == "cpu" else f"fused {backend()} kernels"
    else:  # MLX then simplifies the graph but cannot fuse: still correct, less gain
        how = "graph only: no C++ compiler (g++) for fused CPU kernels"
    return True, f"on, {how}"


def compile_steps() -> tuple[bool, str]:
    """Whether the engine's per-token functions run under ``mx.compile``, and a note.

    On unless ``MLX_ENTROPIX_COMPILE=0`` or a probe compile fails. On the CPU MLX builds its
    fused kernels with the system C++ compiler at run time (cached on disk); Metal needs none.
    """
    if os.environ.get(ENV_COMPILE, "").strip().lower() in ("0", "false", "no", "off"):
        return False, f"off ({ENV_COMPILE}=0)"
    return _compile_probe()


_phase: list[bool | None] = [None]  # the BLAS is one per process: so is its phase
_sharers = [1]  # processes on this machine computing at once (ranks of ``mlx.launch``)


def share_cores(processes: int) -> None:
    """``processes`` ranks of one job run on this machine: a prefill takes its share of the
    cores, not all of them (two ranks on 2 cores, each on both: 4 spinning BLAS threads, and
    every collective waits for a rank without a core; measured a prefill ~40% faster)."""
    _sharers[0] = max(1, processes)


def blas_phase(prefill: bool) -> None:
    """Set the BLAS's thread count for what the engine runs next (CPU backend): all cores
    for a prefill's matrix products, one for a decode step's. A decode step's products are
    small (one to a few rows): a second thread saves little and, between calls, spins on the
    core the host needs to build the next step (measured on 2 cores: the process's CPU time
    per token halved, decode as fast or faster; a prefill 8-25% slower on one thread). A
    no-op off the CPU or without MKL/OpenBLAS."""
    if prefill == _phase[0] or backend() != "cpu":
        return
    if prefill:  # a queued decode step ends on the threads it began with (the same bits)
        mx.synchronize()
    cores = (os.cpu_count() or 1) // _sharers[0] if _sharers[0] > 1 else None
    blas.set_threads(cores if prefill else 1)
    _phase[0] = prefill


def two_rows_rule(compute_dtype: str) -> Callable[[list[mx.array]], bool] | None:
    """Which weight shapes compute a lone row as two rows (``models.two_rows``): on the CPU, in
    floating point, with an optimized BLAS, those measured faster (``two_rows_faster``); None
    elsewhere. ``MLX_ENTROPIX_TWO_ROWS`` "0": none, "1": every shape, unmeasured."""
    forced = os.environ.get(ENV_TWO_ROWS)
    if forced in ("0", "1"):
        return (lambda weights: True) if forced == "1" else None
    if backend() != "cpu" or compute_dtype == "quantized" or blas.preload().path is None:
        return None
    return two_rows_faster


def two_rows_faster(weights: list[mx.array]) -> bool:
    """Whether products with these weights (one shape, (out, in)) give a row the same bits and
    take at least 10% less time for two rows than for one here; measured once per machine,
    shape and count (``blas.measured_once``)."""
    shape, dtype = weights[0].shape, str(weights[0].dtype).split(".")[-1]
    what = f"{shape[0]}x{shape[1]} x{len(weights)} {dtype}"
    return bool(blas.measured_once("two_rows", lambda: _two_rows_measured(weights), what))


def _two_rows_measured(weights: list[mx.array]) -> bool:
    """All the products in one graph (out of the caches, as in a decode step), on a decode
    step's one BLAS thread, medians of 9."""
    x = mx.random.normal((2, weights[0].shape[1]), key=mx.random.key(0))
    if not all(mx.array_equal((x @ w.T)[:1], x[:1] @ w.T).item() for w in weights[:2]):
        return False  # a different kernel's bits: the swap would change the tokens

    def median_s(rows: mx.array) -> float:
        times = []
        for i in range(11):
            start = time.perf_counter()
            mx.eval([rows @ w.T for w in weights])
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    blas.set_threads(1)
    try:
        return median_s(x) < 0.9 * median_s(x[:1])
    finally:
        blas.set_threads(None)
        _phase[0] = None  # the next phase sets its threads again


@dataclass(frozen=True)
class RuntimeInfo:
    backend: str
    device: str
    blas: str
    blas_path: str | None
    blas_note: str
    mlx_version: str
    platform: str
    compiled_steps: bool = False
    compile_note: str = ""
    # Batched rows bitwise equal to the rows alone, measured at start (``blas.batch_invariant``)
    batch_invariant: bool = False
    # MLX's compiled CPU kernels: their folder and whether they are all built (``kernels``)
    kernel_cache: str = ""
    kernel_cache_warm: bool = False
    kernel_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_info() -> RuntimeInfo:
    name = backend()
    if name == "cpu":
        device = f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores)"
    else:
        gpu = "Apple GPU" if name == "metal" else "CUDA GPU"
        device = str(mx.device_info().get("device_name", gpu))
    return RuntimeInfo(
        backend=name,
        device=f"{device} [{mx.default_device()}]",
        blas=_blas.name if name == "cpu" else f"{_blas.name} (unused on {name})",
        blas_path=_blas.path,
        blas_note=_blas.note,
        mlx_version=mx.__version__,
        platform=f"{platform.system()} {platform.machine()}",
        compiled_steps=compile_steps()[0],
        compile_note=compile_steps()[1],
        batch_invariant=blas.batch_invariant(enable=False),
        **_kernel_info(name),
    )


def _kernel_info(backend_name: str) -> dict[str, Any]:
    if backend_name != "cpu":
        return {"kernel_note": f"none on the CPU side ({backend_name} kernels are MLX's own)"}
    folder, warm = kernels.kernel_dir(), kernels.is_warm()
    state = "warm" if warm else "cold: the first run builds them in the background"
    return {
        "kernel_cache": str(folder),
        "kernel_cache_warm": warm,
        "kernel_note": f"{state} ({kernels.kernels_built()} in {folder})",
    }
