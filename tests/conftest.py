"""Shared fixtures: the embedded model is loaded once per test session (about a second)."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)

import pytest


@pytest.fixture(scope="session")
def embedded():
    from mlx_entropix.io.load import load

    return load()
