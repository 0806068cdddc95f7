"""One KV cache for the rows of many requests, each at its own length (continuous batching).

Per layer, keys and values of every row live in one buffer, (slots x kv heads, capacity, head
dim); a row keeps its keys from position 0 up, so rows of different lengths share every
operation of a decode step: one RoPE with per-row positions, one scatter of the new keys, one
attention over the longest row's keys with the others' tail masked.

Masked attention over padded keys normally changes the last bits (reductions group their
terms by position). Here it does not, by construction, so a row gives the same bits whatever
the other rows' lengths (measured, ``tests/test_shared_cache.py``):
- keys are padded to a multiple of ``BLOCK`` and the softmax sees exactly 0 for the masked
  tail (its reductions group terms the same way and add exact zeros);
- p @ V runs block by block (``BLOCK`` keys each, a fixed matmul shape) and the blocks' sums
  are added in order, trailing zero blocks last.

On the CPU a decode step attends only to the keys up to its longest row's, rounded up to
``LIVE`` (``SharedCache(live=True)``): the padding beyond holds masked keys whose softmax is an
exact 0, so leaving them out leaves every bit as it was where the products ignore them too
(MLX's CPU softmax sums its terms in order, in SIMD lanes that divide ``LIVE``; the BLAS's dot
products and block sums do not change when their zero terms are cut off, which is measured:
``live_keys_exact``). A step read up to 255 padded keys per row, up to 63 now (issue 20:
3-9% of an 8- to 16-row step, 11-16% more tokens/s for 4 fork requests).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import mlx.core as mx

BLOCK = 256  # keys per attention block; the buffers grow by this many positions
LIVE = 64  # a decode step's keys (``live``): its longest row's, rounded up to this many


def padded(n: int) -> int:
    """``n`` keys rounded up to whole blocks."""
    return -(-n // BLOCK) * BLOCK


class SharedStep(NamedTuple):
    """What every layer of one step needs, computed once per step (``begin_step``)."""

    positions: mx.array  # (slots,) each row's first new position: its RoPE offset
    valid: mx.array  # (slots, 1, 1, queries, keys) the keys each query attends to
    keys: int  # key count of the longest row, padded (whole blocks, or ``LIVE`` multiples)
    rows: mx.array  # (slots * kv heads * queries,) buffer rows of the new keys ...
    at: mx.array  # ... and their positions


class SharedCache:
    """Slots of rows, per layer one key and one value buffer; a free slot is reused."""

    def __init__(self, n_layers: int, n_kv_heads: int, head_dim: int, dtype: Any = mx.float32,
                 live: bool = False):  # fmt: skip
        self.n_layers, self.n_kv, self.head_dim, self.dtype = n_layers, n_kv_heads, head_dim, dtype
        self.live = live  # a decode step over ``LIVE`` keys (the caller checks live_keys_exact)
        self.keys: list[mx.array] = []
        self.values: list[mx.array] = []
        self.lengths: list[int | None] = []  # keys held per slot; None = free
        self.capacity = 0  # positions per slot

    def over(self, keys: list[mx.array], values: list[mx.array]) -> SharedCache:
        """This layout over the given buffers (a traced decode step's: ``Model.decode_shared``)."""
        self.keys, self.values, self.capacity = list(keys), list(values), keys[0].shape[1]
        return self

    @property
    def slots(self) -> int:
        """Slots a step computes: up to the last one in use (free ones inside ride along)."""
        used = [i for i, n in enumerate(self.lengths) if n is not None]
        return used[-1] + 1 if used else 0

    def add(self, layers: list[tuple[mx.array, mx.array]], length: int, rows: int) -> list[int]:
        """Copy one prefilled row (per layer its keys and values, (heads, >= length, d)) into
        ``rows`` free slots; returns them."""
        slots = [self._free_slot() for _ in range(rows)]
        self._reserve(length + 1)
        for layer, (keys, values) in enumerate(layers):
            keys = keys[:, :length].astype(self.dtype)
            values = values[:, :length].astype(self.dtype)
            for s in slots:
                rows_of = slice(s * self.n_kv, (s + 1) * self.n_kv)
                self.keys[layer][rows_of, :length] = keys
                self.values[layer][rows_of, :length] = values
        for s in slots:
            self.lengths[s] = length
        return slots

    def row(self, slot: int) -> list[tuple[mx.array, mx.array]]:
        """One slot's keys and values per layer, (heads, capacity, d) (for ``add``)."""
        rows_of = slice(slot * self.n_kv, (slot + 1) * self.n_kv)
        return [(k[rows_of], v[rows_of]) for k, v in zip(self.keys, self.values, strict=True)]

    def free(self, slots: list[int], clear: bool = False) -> None:
        """``clear``: zero their keys and values too. A slot's stale positions are masked
        (an exact 0 in p @ V) for the row that takes it next, unless they hold a NaN or an
        infinity (0 * NaN): what a row whose model output turned non-finite leaves behind."""
        for s in slots:
            self.lengths[s] = None
            if clear:
                rows_of = slice(s * self.n_kv, (s + 1) * self.n_kv)
                for buffers in (self.keys, self.values):
                    for layer in buffers:
                        layer[rows_of] = 0

    def _free_slot(self) -> int:
        for i, n in enumerate(self.lengths):
            if n is None:
                self.lengths[i] = 0  # taken (filled by the caller)
                return i
        shape = (self.n_kv, self.capacity, self.head_dim)
        self.keys = [mx.concatenate([k, mx.zeros(shape, self.dtype)]) for k in self.keys]
        self.values = [mx.concatenate([v, mx.zeros(shape, self.dtype)]) for v in self.values]
        if not self.keys:
            self.keys = [mx.zeros(shape, self.dtype) for _ in range(self.n_layers)]
            self.values = [mx.zeros(shape, self.dtype) for _ in range(self.n_layers)]
        self.lengths.append(0)
        return len(self.lengths) - 1

    def _reserve(self, positions: int) -> None:
        """Room for ``positions`` keys per slot (whole blocks)."""
        if positions <= self.capacity:
            return
        extra = padded(positions) - self.capacity
        rows = len(self.lengths) * self.n_kv
        pad = (rows, extra, self.head_dim)
        if self.keys and rows:
            self.keys = [mx.concatenate([k, mx.zeros(pad, self.dtype)], axis=1) for k in self.keys]
            self.values = [mx.concatenate([v, mx.zeros(pad, self.dtype)], axis=1)
                           for v in self.values]  # fmt: skip
        self.capacity += extra

    def begin_step(self, queries: int = 1, counts: list[int] | None = None) -> SharedStep:
        """Before a step of ``queries`` tokens per row over ``slots`` rows (``counts``: the real
        ones per row, the rest padding; default all): where each row's new keys go, the mask of
        the keys each query attends to, and the padded key count of the longest row."""
        n = self.slots
        lengths = [x or 0 for x in self.lengths[:n]]
        self._reserve(max(lengths) + queries)
        keys = padded(max(lengths) + queries)
        if self.live and queries == 1:  # a decode step (a prefill keeps whole blocks)
            keys = min(keys, -(-(max(lengths) + 1) // LIVE) * LIVE)
        positions = mx.array(lengths)
        query_at = positions[:, None] + mx.arange(queries)[None]  # (n, queries)
        valid = mx.arange(keys)[None, None] <= query_at[:, :, None]  # causal, own keys only
        self._counts = counts or [queries] * n
        return SharedStep(
            positions=positions,
            valid=valid.reshape(n, 1, 1, queries, keys),
            keys=keys,
            rows=mx.repeat(mx.arange(n * self.n_kv), queries),
            at=mx.repeat(query_at[:, None], self.n_kv, axis=1).reshape(-1),
        )

    def decode(self, run: Callable[..., tuple], tokens: mx.array) -> tuple[mx.array, mx.array]:
        """A decode step of every row (a token each) by ``run``, a pure function of the
        buffers and the step's layout returning (logits, scores, keys, values): traceable, so
        ``mx.compile`` can take the whole pass (``Model.decode_shared``)."""
        s = self.begin_step()
        logits, scores, keys, values = run(tokens, self.keys, self.values, s.positions,
                                           s.valid, s.rows, s.at)  # fmt: skip
        self.keys, self.values = list(keys), list(values)
        self.end_step()
        return logits, scores

    def at_last(self, x: mx.array, axis: int) -> mx.array:
        """``x`` at each row's last real query of the step (``axis``: the queries')."""
        last = mx.array([c - 1 for c in self._counts])
        return mx.take_along_axis(x, last.reshape(-1, *[1] * (x.ndim - 1)), axis=axis)

    def end_step(self) -> None:
        for i, n in enumerate(self.lengths):
            if n is not None:
                self.lengths[i] = n + self._counts[i]

    def write(self, layer: int, step: SharedStep, k: mx.array, v: mx.array) -> None:
        """Store each row's new keys and values (slots, heads, queries, d) from its position
        on (padding queries write past the row's end, where nothing reads before a real key
        overwrites them)."""
        self.keys[layer][step.rows, step.at] = k.reshape(-1, self.head_dim)
        self.values[layer][step.rows, step.at] = v.reshape(-1, self.head_dim)

    def view(self, layer: int, n: int, keys: int) -> tuple[mx.array, mx.array]:
        """The first ``n`` slots' keys and values, ``keys`` positions: (n, heads, keys, d)."""
        shape = (n, self.n_kv, self.capacity, self.head_dim)
        return (self.keys[layer][: n * self.n_kv].reshape(shape)[:, :, :keys],
                self.values[layer][: n * self.n_kv].reshape(shape)[:, :, :keys])  # fmt: skip


def window_mask(step: SharedStep, window: int | None) -> mx.array:
    """``step.valid`` narrowed to each query's last ``window`` positions, itself included (a
    sliding-window layer: what mlx-lm's ``RotatingKVCache`` keeps); None: as it is."""
    if window is None:
        return step.valid
    n, _, _, L, K = step.valid.shape
    query_at = step.positions[:, None] + mx.arange(L)[None]
    recent = mx.arange(K)[None, None] > query_at[:, :, None] - window
    return step.valid & recent.reshape(n, 1, 1, L, K)


def observed_keys(scores: mx.array, keys: int, window: int | None) -> mx.array:
    """A row's last-query scores (..., K) over its ``keys`` keys, or the last ``window`` of
    them (a sliding last layer: the others are masked)."""
    return scores[..., max(0, keys - window) if window else 0 : keys]


def masked_attention(
    q: mx.array, k: mx.array, v: mx.array, valid: mx.array, scale: float
) -> tuple[mx.array, mx.array]:
    """Queries over their valid keys: q (B, H, L, d), k/v (B, Hkv, K, d) with K a multiple of
    ``BLOCK`` (or of ``LIVE``: the last block cut short), valid (B, 1, 1, L, K). Returns the
    output (B, L, H * d) and the scores (B, H, L, K) (masked keys -inf). Heads grouped by their
    kv head (no repeat of k)."""
    B, H, L, d = q.shape
    n_kv, K = k.shape[1], k.shape[2]
    rep, (blocks, rest) = H // n_kv, divmod(K, BLOCK)
    q1 = (q * scale).reshape(B, n_kv, rep, L, d)
    scores = mx.where(valid, q1 @ k[:, :, None].swapaxes(-1, -2), -mx.inf)  # (B, Hkv, rep, L, K)
    p = mx.softmax(scores, axis=-1, precise=True)
    if rest:  # whole blocks, then the cut one: each block's p @ V, added in order
        p, whole = p.reshape(B, n_kv, rep * L, K), blocks * BLOCK
        last = p[:, :, None, :, whole:] @ v[:, :, None, whole:]  # (B, Hkv, 1, rep * L, d)
        if blocks:
            p = p[..., :whole].reshape(B, n_kv, rep * L, blocks, BLOCK).transpose(0, 1, 3, 2, 4)
            whole_blocks = p @ v[:, :, :whole].reshape(B, n_kv, blocks, BLOCK, d)
            last = mx.concatenate([whole_blocks, last], axis=2)
        out = mx.sum(last, axis=2)
    else:
        p = p.reshape(B, n_kv, rep * L, blocks, BLOCK).transpose(0, 1, 3, 2, 4)
        out = mx.sum(p @ v.reshape(B, n_kv, blocks, BLOCK, d), axis=2)  # (B, Hkv, rep * L, d)
    out = out.reshape(B, H, L, d).transpose(0, 2, 1, 3).reshape(B, L, H * d)
    return out, scores.reshape(B, H, L, K)


@functools.cache
def live_keys_exact(n_heads: int, n_kv_heads: int, head_dim: int, rows: int = 4) -> bool:
    """Whether a decode step over ``LIVE`` keys gives here the bits of the same step over whole
    blocks (``SharedCache(live=True)``): on the CPU, measured once per process and head shape
    on random rows at every cut of a block and past it. The softmax is exact by construction;
    the BLAS's products are asked (a kernel that grouped a dot product's terms by its length
    would fail here, and the step keeps whole blocks)."""
    if mx.default_device() != mx.cpu:
        return False
    key = mx.random.key(20)
    for live in range(LIVE, 2 * BLOCK, LIVE):
        k1, k2, k3, key = mx.random.split(key, 4)
        q = mx.random.normal((rows, n_heads, 1, head_dim), key=k1)
        k = mx.random.normal((rows, n_kv_heads, padded(live), head_dim), key=k2)
        v = mx.random.normal((rows, n_kv_heads, padded(live), head_dim), key=k3)
        lengths = mx.array([live - 1 - 7 * r for r in range(rows)])
        valid = mx.arange(padded(live))[None] <= lengths[:, None]
        valid = valid.reshape(rows, 1, 1, 1, -1)
        whole = masked_attention(q, k, v, valid, head_dim**-0.5)
        cut = masked_attention(q, k[:, :, :live], v[:, :, :live], valid[..., :live],
                               head_dim**-0.5)  # fmt: skip
        same_scores = mx.array_equal(whole[1][..., :live], cut[1]).item()
        if not (mx.array_equal(whole[0], cut[0]).item() and same_scores):
            return False
    return True
