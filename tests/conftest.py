"""Shared fixtures: the embedded model is loaded once per test session (about a second)."""

from __future__ import annotations

import os
from collections.abc import Iterator

# One compile state for the whole session (and the processes it starts): no uncompiled first
# run while kernels build in the background (``runtime.kernels``; tests/test_first_run.py).
os.environ.setdefault("MLX_ENTROPIX_KERNEL_WARMUP", "0")

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.runtime.blas import batch_invariant

import pytest

# MKL's strict mode always, before anything computes (and for the processes the tests start):
# where it makes a product's rows batch-invariant (``BATCH_INVARIANT``) the batching tests ask
# for identical metrics, not only identical tokens; where it does not (an AMD EPYC, where the
# server leaves it off), it still makes the attention's batched products independent of the
# batch, which tests/test_shared_cache.py checks bitwise.
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
BATCH_INVARIANT = batch_invariant()


def pull_round(pulls: dict[int, Iterator], out: dict[int, list]) -> None:
    """Pull every stream once, as the server's worker does: an item joins its stream's list
    (None: nothing yet), a stream that ends leaves ``pulls``."""
    for i, pull in list(pulls.items()):
        item = next(pull, "end")
        if item == "end":
            del pulls[i]
        elif item is not None:
            out[i].append(item)


def drain(pulls: dict[int, Iterator], out: dict[int, list]) -> None:
    """Pull round-robin until every stream has ended."""
    while pulls:
        pull_round(pulls, out)


@pytest.fixture(scope="session")
def embedded():
    from mlx_entropix.io.load import load

    return load()
