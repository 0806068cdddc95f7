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


@pytest.mark.parametrize(
    ("name", "value"), [("ENV_DTYPE", "fp16"), ("ENV_DTYPE", "garbage"), ("ENV_DEVICE", "gpu0")]
)
def test_an_unknown_value_is_an_error_not_the_default(monkeypatch, name, value):
    """Before: MLX_ENTROPIX_DTYPE=fp16 ran fp32 (Llama) or left the weights as stored (other
    families) with "fp16" in the banner; MLX_ENTROPIX_DEVICE=gpu0 was ignored."""
    from mlx_entropix.errors import ModelLoadError
    from mlx_entropix.io.load import load

    monkeypatch.setenv(getattr(device, name), value)
    message = f"{getattr(device, name)}='{value}' is not one of"
    with pytest.raises(ValueError, match=message):
        device.select_device() if name == "ENV_DEVICE" else device.compute_dtype(True)
    with pytest.raises(ModelLoadError, match=message):  # one line at the CLI and the server
        load(None)


def test_a_known_value_in_capitals_is_accepted(monkeypatch):
    monkeypatch.setenv(device.ENV_DTYPE, "Float16")
    assert device.compute_dtype(True) == "float16"
