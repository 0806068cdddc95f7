"""Which device runs the model, in which dtype, and a report of it for ``--info``.

MLX picks Metal on Apple Silicon, CUDA with the ``mlx[cuda*]`` wheels, else the CPU. On the CPU,
fp32 with an optimized BLAS beats both MLX's quantized matmul and fp16/bf16 (measured on a 2-core
x86: 29 vs 9 vs 5-9 tok/s), so quantized weights are dequantized to fp32 there; on GPUs they stay
quantized (less memory traffic is what makes decode fast there).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

from . import blas

_blas = blas.preload()

import mlx.core as mx  # noqa: E402  (after the BLAS preload, on purpose)

ENV_DEVICE = "MLX_ENTROPIX_DEVICE"  # "cpu" or "gpu": force a device
ENV_DTYPE = "MLX_ENTROPIX_DTYPE"  # "float32", "float16", "bfloat16" or "quantized"


def backend() -> str:
    """ "metal", "cuda" or "cpu": what the default device really is."""
    if mx.default_device() == mx.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda" if mx.cuda.is_available() else "cpu"


def select_device() -> str:
    """Apply ``MLX_ENTROPIX_DEVICE`` if set, then return the backend in use."""
    want = os.environ.get(ENV_DEVICE, "").lower()
    if want == "cpu":
        mx.set_default_device(mx.cpu)
    elif want == "gpu":
        mx.set_default_device(mx.gpu)
    return backend()


def compute_dtype(quantized: bool) -> str:
    """The weight format to run in on this device: "quantized" or a float dtype name."""
    want = os.environ.get(ENV_DTYPE, "").lower()
    if want:
        return want
    if backend() == "cpu":
        return "float32"
    return "quantized" if quantized else "float16"


@dataclass(frozen=True)
class RuntimeInfo:
    backend: str
    device: str
    blas: str
    blas_path: str | None
    blas_note: str
    mlx_version: str
    platform: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def runtime_info() -> RuntimeInfo:
    dev = mx.default_device()
    name = backend()
    if name == "metal":
        device = mx.device_info().get("device_name", "Apple GPU")
    elif name == "cuda":
        device = str(mx.device_info().get("device_name", "CUDA GPU"))
    else:
        device = f"{platform.processor() or platform.machine()} CPU ({os.cpu_count()} cores)"
    blas_name = _blas.name if name == "cpu" else f"{_blas.name} (unused on {name})"
    return RuntimeInfo(
        backend=name,
        device=f"{device} [{dev}]",
        blas=blas_name,
        blas_path=_blas.path,
        blas_note=_blas.note,
        mlx_version=mx.__version__,
        platform=f"{platform.system()} {platform.machine()}",
    )
