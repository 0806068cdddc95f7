"""Shared fixtures: the embedded model is loaded once per test session (about a second)."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.runtime.blas import batch_invariant

import pytest

# As the server runs (before anything computes): rows of a batch bitwise as alone, so the
# batching tests can ask for identical metrics, not only identical tokens.
BATCH_INVARIANT = batch_invariant()


@pytest.fixture(scope="session")
def embedded():
    from mlx_entropix.io.load import load

    return load()
