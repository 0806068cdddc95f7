"""The shared KV cache of continuous batching: a row's attention gives the same bits whatever
the other rows' lengths (a decode step's live keys too), and slots are filled, grown and reused
correctly."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.models.shared_cache import (
    BLOCK,
    LIVE,
    SharedCache,
    live_keys_exact,
    masked_attention,
    padded,
)

import mlx.core as mx
import pytest
from conftest import assert_decode_shared_is_the_steps


def _row(length: int, keys: int, q, k, v):
    """Row 0 of a masked attention over ``keys`` padded positions, ``length`` of them valid."""
    valid = (mx.arange(keys) < length).reshape(1, 1, 1, 1, keys)
    pad = ((0, 0), (0, 0), (0, keys - k.shape[2]), (0, 0))
    # garbage in the padded tail: it must not leak into the row
    kp = mx.pad(k, pad, constant_values=7.0)
    vp = mx.pad(v, pad, constant_values=-3.0)
    return masked_attention(q, kp, vp, valid, 0.125)


@pytest.mark.parametrize("length", [1, 5, 33, BLOCK - 1, BLOCK, BLOCK + 1, 700, 2000])
def test_a_rows_attention_does_not_depend_on_the_padding(length):
    mx.random.seed(length)
    q = mx.random.normal((1, 9, 1, 64))
    k, v = mx.random.normal((1, 3, length, 64)), mx.random.normal((1, 3, length, 64))
    own_out, own_scores = _row(length, padded(length), q, k, v)
    for keys in (padded(length) + BLOCK, padded(length) + 4 * BLOCK):
        out, scores = _row(length, keys, q, k, v)
        assert mx.array_equal(out, own_out).item()
        assert mx.array_equal(scores[..., :length], own_scores[..., :length]).item()
        assert mx.all(scores[..., length:] == -mx.inf).item()
    # and the same as plain attention over the valid keys, to float precision
    ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125)
    assert mx.allclose(own_out, ref.transpose(0, 2, 1, 3).reshape(1, 1, -1), atol=1e-5).item()


@pytest.mark.parametrize("keys", [LIVE, 3 * LIVE, BLOCK + LIVE, 2 * BLOCK + 3 * LIVE])
def test_a_step_over_its_live_keys_gives_the_bits_of_whole_blocks(keys):
    """The cut last block (``SharedCache(live=True)``): plain attention to float precision
    always, and bitwise the whole blocks' output where this BLAS allows it (``live_keys_exact``:
    the models take live keys only then)."""
    mx.random.seed(keys)
    q = mx.random.normal((3, 9, 1, 64))
    k, v = mx.random.normal((3, 3, padded(keys), 64)), mx.random.normal((3, 3, padded(keys), 64))
    lengths = mx.array([keys, keys - 1, keys - LIVE + 1])  # the longest row fills its live keys
    valid = (mx.arange(padded(keys))[None] < lengths[:, None]).reshape(3, 1, 1, 1, -1)
    out, scores = masked_attention(q, k[:, :, :keys], v[:, :, :keys], valid[..., :keys], 0.125)
    assert scores.shape == (3, 9, 1, keys)
    for r, n in enumerate(lengths.tolist()):
        ref = mx.fast.scaled_dot_product_attention(q[r : r + 1], k[r : r + 1, :, :n],
                                                   v[r : r + 1, :, :n], scale=0.125)  # fmt: skip
        assert mx.allclose(out[r], ref.transpose(0, 2, 1, 3).reshape(1, -1), atol=1e-5).item()
    if live_keys_exact(9, 3, 64):
        whole_out, whole_scores = masked_attention(q, k, v, valid, 0.125)
        assert mx.array_equal(out, whole_out).item()
        assert mx.array_equal(scores, whole_scores[..., :keys]).item()


def test_a_decode_step_takes_its_live_keys_and_a_prefill_whole_blocks():
    rows = [(mx.zeros((3, 70, 4)), mx.zeros((3, 70, 4)))]
    for live in (True, False):
        cache = SharedCache(n_layers=1, n_kv_heads=3, head_dim=4, live=live)
        cache.add(rows, 70, 1)
        cache.add(rows, 10, 1)
        step = cache.begin_step()  # the longest row's 71st key: two LIVE spans, or a block
        assert step.keys == (2 * LIVE if live else BLOCK) and step.valid.shape[-1] == step.keys
        keys, values = cache.view(0, 2, step.keys)
        assert keys.shape == values.shape == (2, 3, step.keys, 4)
        cache.end_step()
        assert cache.begin_step(queries=5).keys == BLOCK  # a prompt's chunk: whole blocks


def test_slots_are_filled_grown_and_reused():
    cache = SharedCache(n_layers=2, n_kv_heads=3, head_dim=4)
    k1 = mx.random.normal((1, 3, 10, 4))
    first = cache.add([(k1[0], -k1[0])] * 2, 10, rows=2)
    assert first == [0, 1] and cache.lengths == [10, 10] and cache.capacity == BLOCK
    keys, values = cache.view(1, 2, BLOCK)
    assert mx.array_equal(keys[1, :, :10], k1[0]).item()
    assert mx.array_equal(values[0, :, :10], -k1[0]).item()
    cache.free([0])
    assert cache.slots == 2  # slot 1 still in use
    k2 = mx.random.normal((1, 3, BLOCK + 5, 4))
    assert cache.add([(k2[0], k2[0])] * 2, BLOCK + 5, rows=1) == [0]  # the free slot is reused
    assert cache.capacity == 2 * BLOCK  # grown for the longer row, old rows kept
    keys, _ = cache.view(0, 2, 2 * BLOCK)
    assert mx.array_equal(keys[1, :, :10], k1[0]).item()
    assert mx.array_equal(keys[0, :, : BLOCK + 5], k2[0]).item()
    step = cache.begin_step()
    assert step.positions.tolist() == [BLOCK + 5, 10] and step.keys == 2 * BLOCK
    assert step.valid.shape == (2, 1, 1, 1, 2 * BLOCK) and step.valid[1].sum().item() == 11
    cache.write(0, step, mx.ones((2, 3, 1, 4)), mx.ones((2, 3, 1, 4)))
    cache.end_step()
    assert cache.lengths == [BLOCK + 6, 11]
    keys, _ = cache.view(0, 2, 2 * BLOCK)
    assert mx.all(keys[1, :, 10] == 1).item() and mx.all(keys[0, :, BLOCK + 5] == 1).item()
    cache.free([0, 1])
    assert cache.slots == 0


def test_a_prompt_row_gives_the_same_bits_beside_longer_prompts():
    """Prefill rows (several queries each, right-padded): a prompt's row is the same whether
    it is alone or beside a longer prompt (padded queries and keys)."""
    data = [
        mx.random.normal((2, h, 300, 64), key=mx.random.key(i)) for i, h in enumerate((9, 3, 3))
    ]

    def prefill(lengths: list[int]):
        cache = SharedCache(n_layers=1, n_kv_heads=3, head_dim=64)
        for _ in lengths:
            cache.add([], 0, 1)
        width = max(lengths)
        step = cache.begin_step(width, lengths)
        q, k, v = (x[: len(lengths), :, :width] for x in data)
        cache.write(0, step, k, v)
        return masked_attention(q, *cache.view(0, len(lengths), step.keys), step.valid, 0.125)

    alone_out, alone_scores = prefill([7])
    out, scores = prefill([7, 300])
    assert mx.array_equal(out[0, :7], alone_out[0, :7]).item()
    assert mx.array_equal(scores[0, :, :7, :7], alone_scores[0, :, :7, :7]).item()


def test_the_compiled_decode_step_gives_the_step_bits(embedded):
    """``decode_shared`` (the decoder's step: the whole pass in one call, compiled or not)
    gives bitwise what ``step_shared`` gives a layer at a time, logits, scores and the keys
    it stores, for rows at different lengths, over steps that cross a key block."""
    assert_decode_shared_is_the_steps(embedded.model, list(range(100, 100 + BLOCK - 2)))
