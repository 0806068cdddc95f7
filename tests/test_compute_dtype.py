"""The weight format per device (``runtime.device.compute_dtype``): fp32 on the CPU, quantized
kept on Metal, fp16 on CUDA (whose quantized product builds a kernel per new row count)."""

from __future__ import annotations

from mlx_entropix.runtime import device

import pytest


@pytest.mark.parametrize(
    ("backend", "quantized", "expected"),
    [
        ("cpu", True, "float32"),
        ("cpu", False, "float32"),
        ("metal", True, "quantized"),
        ("metal", False, "float16"),
        ("cuda", True, "float16"),
        ("cuda", False, "float16"),
    ],
)
def test_each_device_gets_its_weight_format(monkeypatch, backend, quantized, expected):
    monkeypatch.delenv(device.ENV_DTYPE, raising=False)
    monkeypatch.setattr(device, "backend", lambda: backend)
    assert device.compute_dtype(quantized) == expected


def test_the_variable_overrides_the_rule(monkeypatch):
    monkeypatch.setattr(device, "backend", lambda: "cuda")
    monkeypatch.setenv(device.ENV_DTYPE, "quantized")
    assert device.compute_dtype(True) == "quantized"
