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


def assert_decode_shared_is_the_steps(model, first_tokens: list[int]) -> None:
    """``model.decode_shared`` (compiled and not) gives bitwise what ``step_shared`` gives a
    layer at a time: logits, scores and the keys it stores, for two rows at different lengths
    (a prompt of ``first_tokens``, then 40 of them), over steps that cross a key block."""
    from mlx_entropix.models.llama import run_steps
    from mlx_entropix.models.shared_cache import BLOCK

    import mlx.core as mx

    assert len(first_tokens) == BLOCK - 2
    cache = model.make_cache()
    model(mx.array([first_tokens]), cache)
    prompt = [(c.keys[0], c.values[0]) for c in cache]
    caches = {how: model.shared_cache() for how in ("layers", "compiled", "plain")}
    for shared in caches.values():
        shared.add(prompt, BLOCK - 2, 1)
        shared.add(prompt, 40, 1)
    for step in range(3):  # lengths BLOCK-2 .. BLOCK: the keys grow by a block on the way
        tokens = mx.array([7 + step, 9], dtype=mx.int32)
        out = {
            "layers": run_steps(model.step_shared(tokens, caches["layers"])),
            "compiled": model.decode_shared(tokens, caches["compiled"], compile=True),
            "plain": model.decode_shared(tokens, caches["plain"], compile=False),
        }
        for how in ("compiled", "plain"):
            pairs = zip(out[how], out["layers"], strict=True)
            assert all(mx.array_equal(a, b).item() for a, b in pairs)
            assert caches[how].lengths == caches["layers"].lengths
            assert mx.array_equal(caches[how].keys[-1], caches["layers"].keys[-1]).item()
