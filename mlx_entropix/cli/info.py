"""``--info``: the device, BLAS, compilation, kernel cache and model, as text or JSON."""

from __future__ import annotations

import json
from typing import Any, TextIO


def print_info(lm: Any, out: TextIO, as_json: bool) -> None:
    from ..runtime import device

    rt = device.runtime_info()
    mi = lm.info
    if as_json:
        out.write(json.dumps({"runtime": rt.as_dict(), "model": mi.as_dict()}) + "\n")
        return
    rows = [
        ("device", rt.device),
        ("backend", rt.backend),
        ("BLAS", f"{rt.blas} ({rt.blas_path})" if rt.blas_path else rt.blas),
        ("BLAS note", rt.blas_note),
        ("compiled", rt.compile_note),
        ("kernels", rt.kernel_note),
        (
            "batch rows",
            "bitwise as alone (measured)"
            if rt.batch_invariant
            else "as alone up to the last bits (measured; the server asks MKL for strict mode)",
        ),
        (
            "one row",
            f"computed as two in {mi.two_row_products} layers (faster with this BLAS, same bits)"
            if mi.two_row_products
            else "",
        ),
        ("dtype", f"{mi.compute_dtype} (weights stored as {mi.stored_as})"),
        (
            "metrics",
            "all six (logits + last-layer attention)"
            if mi.attention_metrics
            else f"logits only: attention not observable for {mi.model_type} (null)",
        ),
        ("model", mi.name),
        ("path", f"{mi.path} ({mi.format})"),
        (
            "size",
            f"{mi.n_params / 1e6:.1f}M params, {mi.n_layers} layers, "
            f"context {mi.context_length}, vocab {mi.vocab_size}",
        ),
        ("sharding", mi.sharding.note if mi.sharding else ""),
        ("load time", f"{mi.load_s:.2f} s"),
        ("mlx", rt.mlx_version),
        ("platform", rt.platform),
    ]
    for name, value in rows:
        if value:
            out.write(f"{name + ':':<11} {value}\n")
