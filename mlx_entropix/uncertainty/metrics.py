"""The six uncertainty metrics of entropix, as pure MLX functions computed on the device.

Units are bits (entropies) and bits^2 (varentropies), as in the original entropix
(xjdr-alt/entropix ``sampler.py``, ``calculate_metrics``). Everything is batched over a leading
axis B and returns float32 arrays: the engine evaluates them together with the logits in one
host sync per token.

Inputs
- ``logits``: (B, V), the next-token logits.
- ``scores``: (B, H, K), the last layer's pre-softmax attention scores q.k^T/sqrt(d) of the
  current query over the K *filled* key positions. The original computed these over a
  zero-padded 4096-slot cache, so ~4000 empty slots entered the softmax and attention entropy
  sat near log2(4096) = 12 bits whatever the text; we only ever pass filled positions.
"""

from __future__ import annotations

import math

import mlx.core as mx

from ..events import METRIC_NAMES

LOG2E = 1.0 / math.log(2.0)
__all__ = ["METRIC_NAMES", "attention_metrics", "compute_metrics", "log_normaliser",
           "logits_entropy", "logits_metrics", "vocab_exp"]  # fmt: skip


def vocab_exp(x: mx.array) -> mx.array:
    """exp(x) for x <= 0 (logits minus their max), in float32 element-wise ops (Cephes' expf).

    MLX's CPU ``exp`` costs ~26 ns per element (1.3 ms per 49152 logits, 13x numpy's) and is
    off by up to 3e-6 relative; this is within 1e-7 and, compiled, 3x faster (measured,
    issue 13). Below -87 it returns ~1e-38 instead of 0: no sum or threshold here notices.
    """
    y, n = _expf_parts(x)
    return y * mx.left_shift(n.astype(mx.int32) + 127, 23).view(mx.float32)  # * 2^n


def _expf_parts(x: mx.array) -> tuple[mx.array, mx.array]:
    """Cephes' expf without its last step: exp(x) = y * 2^n for x <= 0, clamped at -87 (how
    to multiply by 2^n is the caller's: a bit trick, or ``mx.power`` in a shapeless graph)."""
    x = mx.maximum(x, -87.0)
    n = mx.floor(x * LOG2E + 0.5)  # x = n ln2 + r, |r| <= ln2 / 2
    r = x - n * 0.693359375 - n * -2.12194440e-4  # ln2 in two parts: r stays exact
    y = 1.9875691500e-4 * r + 1.3981999507e-3
    for c in (8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        y = y * r + c
    return y * (r * r) + r + 1.0, n


def softmax_keys(scores: mx.array) -> mx.array:
    """Softmax over the last axis for long attention rows, compiled shapelessly (the key count
    grows every step): Cephes' expf as in ``vocab_exp``, with 2^n as ``mx.power`` (``view`` would
    bake the shape into the graph). On the CPU, over 2,014 keys x 9 heads x 30 layers, it takes
    a decode step's attention from 22 to 15.5 ms (MLX's softmax spends it in its scalar exp);
    below ~1,000 keys the compiled call costs more than it saves. Within 1e-7 of MLX's."""
    y, n = _expf_parts(scores - mx.max(scores, axis=-1, keepdims=True))
    e = y * mx.power(2.0, n)
    return e / mx.sum(e, axis=-1, keepdims=True)


def log_normaliser(logits: mx.array) -> tuple[mx.array, mx.array]:
    """(exp(logits - max), max + log(sum of those)): one pass of exp over the vocabulary,
    the costly part on a CPU, shared by the entropy and the token log-probabilities."""
    top = mx.max(logits, axis=-1, keepdims=True)
    weights = vocab_exp(logits - top)
    return weights, top + mx.log(mx.sum(weights, axis=-1, keepdims=True))


def logits_entropy(
    logits: mx.array, normaliser: tuple[mx.array, mx.array] | None = None
) -> tuple[mx.array, mx.array]:
    """Entropy H = -sum p log2 p and varentropy sum p (log2 p + H)^2 of softmax(logits)."""
    logits = logits.astype(mx.float32)
    weights, log_norm = normaliser or log_normaliser(logits)
    p = weights / mx.sum(weights, axis=-1, keepdims=True)
    log2p = (logits - log_norm) * LOG2E
    entropy = -mx.sum(p * log2p, axis=-1)
    varentropy = mx.sum(p * mx.square(log2p + entropy[..., None]), axis=-1)
    return entropy, varentropy


def attention_metrics(
    scores: mx.array, group: mx.distributed.Group | None = None
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """(attn_entropy, attn_varentropy, agreement, interaction_strength) of (B, H, K) scores.

    - attn_entropy: mean over heads of each head's entropy of softmax(scores) over keys.
    - attn_varentropy: population variance of those per-head entropies *across heads*
      (the torch port took it over the query axis, which is 1 in decode: always 0).
    - agreement: mean |A - mean_over_heads(A)| over heads and keys. Despite its name it grows
      when heads *disagree*; the name is kept from the original for comparability.
    - interaction_strength: mean |scores| over heads and keys.

    ``group``: the heads are split across its ranks (tensor parallel), ``scores`` hold this
    rank's; see ``_sharded_attention_metrics``.
    """
    scores = scores.astype(mx.float32)
    if group is not None and group.size() > 1:
        return _sharded_attention_metrics(scores, group)
    attn = mx.softmax(scores, axis=-1)
    head_entropy = -mx.sum(attn * mx.log2(mx.clip(attn, 1e-10, 1.0)), axis=-1)  # (B, H)
    attn_entropy = mx.mean(head_entropy, axis=-1)
    attn_varentropy = mx.var(head_entropy, axis=-1)
    agreement = mx.mean(mx.abs(attn - mx.mean(attn, axis=1, keepdims=True)), axis=(1, 2))
    interaction = mx.mean(mx.abs(scores), axis=(1, 2))
    return attn_entropy, attn_varentropy, agreement, interaction


def _sharded_attention_metrics(
    scores: mx.array, group: mx.distributed.Group
) -> tuple[mx.array, mx.array, mx.array, mx.array]:
    """The same four metrics when each rank holds H/N heads: exact, with two small collectives
    and never the score matrices themselves.

    1. all_sum of each rank's sum over its heads of A = softmax(scores): (B, K) floats, the
       mean attention over all heads that agreement compares every head against.
    2. all_gather of three values per local head, (H/N, B, 3): its entropy (the mean and the
       variance *across heads* need every head's value), sum_k |A - mean A| and
       sum_k |scores|. Every rank then reduces the same H values in the same order.
    """
    B, h_local, K = scores.shape
    n_heads = h_local * group.size()
    attn = mx.softmax(scores, axis=-1)
    head_entropy = -mx.sum(attn * mx.log2(mx.clip(attn, 1e-10, 1.0)), axis=-1)  # (B, H/N)
    mean_attn = mx.distributed.all_sum(mx.sum(attn, axis=1), group=group) / n_heads  # (B, K)
    deviation = mx.sum(mx.abs(attn - mean_attn[:, None, :]), axis=-1)  # (B, H/N)
    magnitude = mx.sum(mx.abs(scores), axis=-1)  # (B, H/N)
    local = mx.stack([head_entropy, deviation, magnitude], axis=-1).swapaxes(0, 1)
    every = mx.distributed.all_gather(local, group=group).swapaxes(0, 1)  # (B, H, 3)
    entropy = every[..., 0]
    return (
        mx.mean(entropy, axis=-1),
        mx.var(entropy, axis=-1),
        mx.sum(every[..., 1], axis=-1) / (n_heads * K),
        mx.sum(every[..., 2], axis=-1) / (n_heads * K),
    )


def compute_metrics(logits: mx.array, scores: mx.array | None) -> mx.array:
    """All six metrics stacked as (B, 6) float32 in ``METRIC_NAMES`` order.

    ``scores`` None (a model whose last attention cannot be observed, ``families.py``): the
    four attention metrics are NaN, reported as unavailable (null) in the events."""
    entropy, varentropy = logits_entropy(logits)
    if scores is None:
        unavailable = mx.full(entropy.shape, mx.nan, dtype=mx.float32)
        return mx.stack([entropy, varentropy, *[unavailable] * 4], axis=-1)
    return mx.stack([entropy, varentropy, *attention_metrics(scores)], axis=-1)


def logits_metrics(logits: mx.array) -> tuple[mx.array, mx.array, mx.array]:
    """(entropy, varentropy, log of the softmax normaliser), each (B,), from one exp pass over
    the vocabulary: the logits half of the engine's step (pure, fixed shape: compilable)."""
    normaliser = log_normaliser(logits)
    return (*logits_entropy(logits, normaliser), normaliser[1][:, 0])
