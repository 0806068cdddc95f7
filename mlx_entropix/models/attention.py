"""How the engine sees and runs a family's attention, inside mlx-lm's own code.

mlx-lm's own classes run the model (no architecture is re-implemented here). To see the last
layer's pre-softmax scores, its attention module is given an observing subclass (the same
object and parameters, so the weight tree and mlx-lm's loaders are untouched): while it runs,
mlx-lm's shared ``scaled_dot_product_attention`` hands us the queries and keys it receives,
already projected, normed and rotated by the family's own code. From those we take the last
query's q.k^T * scale over the fetched keys, exactly what the fused kernel softmaxes.

Observed by default: the families the tests verify against an independent computation
(``VERIFIED``: Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 3, Phi-3). ``any_family=True`` also
observes any other family whose attention goes through the shared SDPA (exact by
construction, but not verified; models with attention sinks softmax one extra logit).

Where that cannot be seen the scores are None and the engine reports the four attention
metrics as unavailable (the decision then follows its logits-only rules, ``sampler.decide``):
- the family's attention does not call mlx-lm's shared SDPA (Gemma 2 soft-caps its scores in
  its own code), or the family is not verified (Starcoder 2, unless ``any_family``);
- outside the shared batch (a chunked prefill, ``layer_steps``), the last query's mask is an
  array on a global last layer: that pass only.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import RotatingKVCache, make_prompt_cache

from .shared_cache import SharedCache, SharedStep, masked_attention, window_mask

# mlx-lm model modules (``mlx_lm.models.<name>``) whose observed scores the tests verify.
VERIFIED = frozenset({"llama", "qwen2", "qwen3", "gemma", "gemma3_text", "phi3"})

# The observation of the attention running now (set only inside an observed module's call).
_ACTIVE: ContextVar[_Observation | None] = ContextVar("entropix_attention", default=None)
_SUBCLASSES: dict[type, type] = {}
_ATTENTION_NAMES = ("self_attn", "attention", "attn", "mixer")  # where mlx-lm families keep it


class _Observation:
    """The scores of the last call of one observed attention module (``window``: its layer's
    sliding window, None for a global layer)."""

    def __init__(self, window: int | None = None) -> None:
        self.scores: mx.array | None = None
        self.window = window

    def record(self, queries: Any, keys: Any, scale: Any, mask: Any) -> None:
        self.scores = None
        if not isinstance(keys, mx.array) or not isinstance(queries, mx.array):
            return  # quantized cache: packed (weights, scales, biases) tuples
        if not isinstance(scale, int | float):
            return  # a per-head scale: not the plain case
        if isinstance(mask, mx.array):  # the last query sees its window: the last keys
            if self.window is None:
                return  # a non-causal mask row on a global layer: not the plain case
            keys = keys[:, :, -self.window :]
        B, H, _, D = queries.shape
        Hkv, K = keys.shape[1], keys.shape[2]
        # Group query heads by their shared kv head instead of repeating k: (B, Hkv, rep, K).
        q = queries[:, :, -1, :].reshape(B, Hkv, H // Hkv, D).astype(mx.float32)
        scores = (q * scale) @ keys.astype(mx.float32).swapaxes(-1, -2)
        self.scores = scores.reshape(B, H, K)


def _observing_sdpa(original: Any) -> Any:
    def scaled_dot_product_attention(queries, keys, values, cache, scale, mask, *a, **kw):
        observation = _ACTIVE.get()
        if isinstance(cache, SharedLayer):  # a step of a shared batch: our masked attention
            out, scores = cache.attend(queries, keys, values, scale, *a, **kw)
            if observation is not None:
                observation.scores = scores  # every query's
            return out
        if observation is not None:
            observation.record(queries, keys, scale, mask)
        return original(queries, keys, values, cache, scale, mask, *a, **kw)

    scaled_dot_product_attention.__wrapped__ = original  # type: ignore[attr-defined]
    return scaled_dot_product_attention


def route_sdpa(attn: nn.Module) -> bool:
    """Patch the SDPA name of ``attn``'s family module once (every other call passes straight
    through); False when the family computes attention its own way (Gemma 2's soft cap)."""
    family = sys.modules.get(type(attn).__module__)
    sdpa = getattr(family, "scaled_dot_product_attention", None)
    if sdpa is None:
        return False
    if not hasattr(sdpa, "__wrapped__"):
        family.scaled_dot_product_attention = _observing_sdpa(sdpa)
    return True


def _observed_call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    token = _ACTIVE.set(self._entropix_observation)
    try:
        return super(type(self), self).__call__(*args, **kwargs)
    finally:
        _ACTIVE.reset(token)


def attention_of(layer: nn.Module) -> nn.Module | None:
    for name in _ATTENTION_NAMES:
        if isinstance(module := getattr(layer, name, None), nn.Module):
            return module
    return None


def observe_last_attention(model: nn.Module, any_family: bool = False) -> _Observation | None:
    """Observe ``model``'s last attention layer (idempotent); None if it cannot be observed
    (or, unless ``any_family``, if its family is not in ``VERIFIED``)."""
    layers = getattr(model, "layers", None)
    attn = attention_of(layers[-1]) if layers else None
    if attn is None:
        return None
    if isinstance(existing := getattr(attn, "_entropix_observation", None), _Observation):
        return existing
    unverified = not any_family and type(attn).__module__.rsplit(".", 1)[-1] not in VERIFIED
    if unverified or not route_sdpa(attn):  # route_sdpa False: its own attention (Gemma 2)
        return None
    cls = type(attn)
    if cls not in _SUBCLASSES:
        body = {"__call__": _observed_call, "__module__": cls.__module__}
        _SUBCLASSES[cls] = type(cls.__name__, (cls,), body)
    last = make_prompt_cache(model)[-1]
    observation = _Observation(last.max_size if isinstance(last, RotatingKVCache) else None)
    attn.__class__ = _SUBCLASSES[cls]
    attn._entropix_observation = observation  # a plain attribute: not a parameter
    return observation


class SharedLayer:
    """One layer of a ``SharedCache`` during one step, as a family's attention uses a cache
    (``families.py``). ``window``: the layer's sliding window (None: global); ``masks``: the
    step's masks, per window, shared by its layers; ``grouped``: the mask's shape for a
    family's own attention code, (rows, 1, 1, L, K) against query heads grouped by kv head
    (Gemma 2), else (rows, 1, L, K)."""

    def __init__(self, shared: SharedCache, layer: int, step: SharedStep, rows: int,
                 window: int | None, masks: dict, grouped: bool):  # fmt: skip
        self.shared, self.layer, self.step, self.rows = shared, layer, step, rows
        self.offset = step.positions
        self.window, self.masks, self.grouped = window, masks, grouped

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        self.shared.write(self.layer, self.step, keys, values)
        return self.shared.view(self.layer, self.rows, self.step.keys)

    def valid(self, window: int | None) -> mx.array:
        """The keys each query attends to, (rows, 1, 1, L, K): its own, within ``window``."""
        if window not in self.masks:
            self.masks[window] = window_mask(self.step, window)
        return self.masks[window]

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> Any:
        mask = self.valid(window_size)  # for a family's own attention (``attend`` masks itself)
        return mask if self.grouped else mask[:, 0]

    def attend(self, queries: mx.array, keys: mx.array, values: mx.array, scale: Any,
               sinks: Any = None) -> tuple[mx.array, mx.array]:  # fmt: skip
        """The family's SDPA, (B, H, L, d), and every query's scores (B, H, L, K)."""
        if sinks is not None or not isinstance(scale, int | float):
            raise ValueError("attention sinks or per-head scales cannot join a shared batch")
        out, scores = masked_attention(queries, keys, values, self.valid(self.window), scale)
        B, L, H = queries.shape[0], queries.shape[2], queries.shape[1]
        return out.reshape(B, L, H, -1).transpose(0, 2, 1, 3), scores
