"""Any mlx-lm model behind our ``Model``'s contract, with the last layer's attention observed.

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
  its own code; recurrent, state-space and linear-attention layers have no scores);
- the KV cache is quantized (keys arrive packed);
- the last query's mask is an array, not plain causal (a prompt longer than a sliding window
  on a sliding last layer, or mlx-lm's left-padded batches): that step only.

Continuous batching (``BatchedFamilyModel``, the ``SharedBatch`` contract): a family whose
every layer keeps a plain ``KVCache`` and whose attention is observed keeps its rows in our
``SharedCache`` as our Llama does. Each layer's attention gets a ``SharedLayer`` as its cache:
per-row RoPE offsets, the new keys written at each row's own position, and, through the same
patched SDPA name, our block-wise masked attention (a row's bits do not depend on the others').
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from ..uncertainty.compiled import compiled
from .llama import Cancelled
from .shared_cache import SharedCache, SharedStep, masked_attention

__all__ = ["VERIFIED", "BatchedFamilyModel", "FamilyArgs", "FamilyModel", "family_model",
           "observe_last_attention"]  # fmt: skip
# mlx-lm model modules (``mlx_lm.models.<name>``) whose observed scores the tests verify.
VERIFIED = frozenset({"llama", "qwen2", "qwen3", "gemma", "gemma3_text", "phi3"})

# The observation of the attention running now (set only inside an observed module's call).
_ACTIVE: ContextVar[_Observation | None] = ContextVar("entropix_attention", default=None)
_SUBCLASSES: dict[type, type] = {}
_ATTENTION_NAMES = ("self_attn", "attention", "attn", "mixer")  # where mlx-lm families keep it


class _Observation:
    """The scores of the last call of one observed attention module."""

    def __init__(self) -> None:
        self.scores: mx.array | None = None
        self.seen = False  # the shared SDPA was reached at least once

    def record(self, queries: Any, keys: Any, scale: Any, mask: Any) -> None:
        self.seen = True
        self.scores = None
        if not isinstance(keys, mx.array) or not isinstance(queries, mx.array):
            return  # quantized cache: packed (weights, scales, biases) tuples
        if isinstance(mask, mx.array) or not isinstance(scale, int | float):
            return  # a non-causal mask row or a per-head scale: not the plain case
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
                observation.seen, observation.scores = True, scores  # every query's
            return out
        if observation is not None:
            observation.record(queries, keys, scale, mask)
        return original(queries, keys, values, cache, scale, mask, *a, **kw)

    scaled_dot_product_attention.__wrapped__ = original  # type: ignore[attr-defined]
    return scaled_dot_product_attention


def _observed_call(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    token = _ACTIVE.set(self._entropix_observation)
    try:
        return super(type(self), self).__call__(*args, **kwargs)
    finally:
        _ACTIVE.reset(token)


def _last_attention(model: nn.Module) -> nn.Module | None:
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    last = layers[-1]
    for name in _ATTENTION_NAMES:
        if isinstance(module := getattr(last, name, None), nn.Module):
            return module
    return None


def observe_last_attention(model: nn.Module, any_family: bool = False) -> _Observation | None:
    """Observe ``model``'s last attention layer (idempotent); None if it cannot be observed
    (or, unless ``any_family``, if its family is not in ``VERIFIED``).

    Patches the family module's ``scaled_dot_product_attention`` name once: the wrapper only
    records while an observed module runs, every other call passes straight through.
    """
    attn = _last_attention(model)
    if attn is None:
        return None
    if isinstance(existing := getattr(attn, "_entropix_observation", None), _Observation):
        return existing
    family = sys.modules.get(type(attn).__module__)
    if not any_family and type(attn).__module__.rsplit(".", 1)[-1] not in VERIFIED:
        return None
    sdpa = getattr(family, "scaled_dot_product_attention", None)
    if sdpa is None:
        return None  # the family computes attention its own way (e.g. Gemma 2's soft cap)
    if not hasattr(sdpa, "__wrapped__"):
        family.scaled_dot_product_attention = _observing_sdpa(sdpa)
    cls = type(attn)
    if cls not in _SUBCLASSES:
        body = {"__call__": _observed_call, "__module__": cls.__module__}
        _SUBCLASSES[cls] = type(cls.__name__, (cls,), body)
    observation = _Observation()
    attn.__class__ = _SUBCLASSES[cls]
    attn._entropix_observation = observation  # a plain attribute: not a parameter
    return observation


@dataclass
class FamilyArgs:
    """What the engine and loaders read of a model's configuration."""

    model_type: str
    vocab_size: int
    num_hidden_layers: int
    max_position_embeddings: int
    # Whether the last layer's attention is observed (the six metrics) or not (two).
    attention_observed: bool


def _config_value(args: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(args, name, None)
        if value is None and isinstance(getattr(args, "text_config", None), dict):
            value = args.text_config.get(name)
        if value is not None:
            return value
    return default


class FamilyModel(nn.Module):
    """An mlx-lm model with our ``Model``'s contract:
    ``model(tokens (B, L), cache, last_only=False) -> (logits, scores (B, H, K) or None)``."""

    # Tensor-parallel groups (runtime/distributed.py): family models are never split.
    group = None
    head_group = None

    def __init__(
        self, inner: nn.Module, config: dict[str, Any] | None = None, any_family: bool = False
    ):
        super().__init__()
        self.inner = inner
        self._observation = observe_last_attention(inner, any_family)
        config = config or {}
        a = getattr(inner, "args", None)
        self.args = FamilyArgs(
            model_type=str(config.get("model_type") or getattr(a, "model_type", "unknown")),
            vocab_size=int(config.get("vocab_size") or _config_value(a, "vocab_size") or 0),
            num_hidden_layers=len(getattr(inner, "layers", []) or []),
            max_position_embeddings=int(
                config.get("max_position_embeddings")
                or _config_value(a, "max_position_embeddings", "n_positions", default=4096)
            ),
            attention_observed=self._observation is not None,
        )

    @property
    def layers(self) -> list[nn.Module]:
        return self.inner.layers

    def make_cache(self) -> list[Any]:
        from mlx_lm.models.cache import make_prompt_cache

        return make_prompt_cache(self.inner)

    def __call__(
        self,
        inputs: mx.array,
        cache: list[Any],
        last_only: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[mx.array, mx.array | None]:
        # mlx-lm runs its layers as one call: a cancel is checked before each (chunk's) pass,
        # not between layers as in our Llama.
        if should_stop is not None and should_stop():
            raise Cancelled
        observation = self._observation
        if observation is not None:
            observation.scores = None
        logits = self.inner(inputs, cache=cache)
        if last_only:
            logits = logits[:, -1:]
        return logits, observation.scores if observation is not None else None


class SharedLayer:
    """One layer of a ``SharedCache`` during one step, as a family's attention uses a cache:
    ``offset`` (each row's position, for RoPE), ``update_and_fetch`` and ``make_mask``; its
    SDPA call comes to ``attend`` (the patched name, ``_observing_sdpa``)."""

    def __init__(self, shared: SharedCache, layer: int, step: SharedStep, rows: int):
        self.shared, self.layer, self.step, self.rows = shared, layer, step, rows
        self.offset = step.positions

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        self.shared.write(self.layer, self.step, keys, values)
        return self.shared.view(self.layer, self.rows, self.step.keys)

    def make_mask(self, n: int, return_array: bool = False, window_size: int | None = None) -> Any:
        if window_size is not None:
            raise ValueError("a sliding-window layer cannot join a shared batch")
        return self.step.valid  # unused: ``attend`` masks with it

    def attend(self, queries: mx.array, keys: mx.array, values: mx.array, scale: Any,
               sinks: Any = None) -> tuple[mx.array, mx.array]:  # fmt: skip
        """The family's SDPA, (B, H, L, d), and every query's scores (B, H, L, K)."""
        if sinks is not None or not isinstance(scale, int | float):
            raise ValueError("attention sinks or per-head scales cannot join a shared batch")
        out, scores = masked_attention(queries, keys, values, self.step.valid, scale)
        B, L, H = queries.shape[0], queries.shape[2], queries.shape[1]
        return out.reshape(B, L, H, -1).transpose(0, 2, 1, 3), scores


def family_model(
    inner: nn.Module, config: dict[str, Any] | None = None, any_family: bool = False
) -> FamilyModel:
    """``inner`` behind our contract; a ``BatchedFamilyModel`` where its rows can share a
    batch: every layer a plain ``KVCache`` (not rotating, recurrent or quantized) and the
    attention observed (each row's attention metrics come from the observed scores)."""
    from mlx_lm.models.cache import KVCache, make_prompt_cache

    observed = observe_last_attention(inner, any_family) is not None
    plain = all(type(c) is KVCache for c in make_prompt_cache(inner))
    return (BatchedFamilyModel if observed and plain else FamilyModel)(inner, config, any_family)


class BatchedFamilyModel(FamilyModel):
    """A family model whose rows can share one ``SharedCache`` (``family_model`` decides)."""

    def shared_cache(self) -> SharedCache:
        """An empty ``SharedCache`` shaped as this model's keys."""
        return SharedCache(*self._key_shape)

    @functools.cached_property
    def _key_shape(self) -> tuple[int, int, int, Any]:
        """Layers, kv heads, head size and dtype of the keys, learnt once from one token (the
        families name them differently; every short prefill asks for a cache)."""
        cache = self.make_cache()
        self.inner(mx.zeros((1, 1), dtype=mx.int32), cache=cache)
        keys = cache[0].keys
        return len(cache), keys.shape[1], keys.shape[3], keys.dtype

    def step_shared(
        self, tokens: mx.array, cache: SharedCache, counts: list[int] | None = None,
        evaluate: bool = False,
    ) -> Generator[None, None, tuple[mx.array, mx.array]]:  # fmt: skip
        """``llama.Model.step_shared``'s contract; mlx-lm runs its layers as one call, so the
        pass yields once before it, not between layers."""
        tokens = tokens.reshape(tokens.shape[0], -1)
        n, queries = tokens.shape
        step = cache.begin_step(queries, counts)
        layers = [SharedLayer(cache, i, step, n) for i in range(cache.n_layers)]
        yield
        observation = self._observation
        observation.scores = None  # type: ignore[union-attr]
        logits = self.inner(tokens, cache=layers)
        scores = observation.scores  # type: ignore[union-attr]
        if evaluate:
            mx.eval(logits, scores, cache.keys, cache.values)
        cache.end_step()
        yield
        last = mx.array([c - 1 for c in counts]) if counts else mx.full((n,), queries - 1)
        logits = mx.take_along_axis(logits, last[:, None, None], axis=1)
        scores = mx.take_along_axis(scores, last[:, None, None, None], axis=2)
        return logits, scores[:, :, 0].astype(mx.float32)

    def decode_shared(
        self, tokens: mx.array, cache: SharedCache, compile: bool = True
    ) -> tuple[mx.array, mx.array]:
        """``llama.Model.decode_shared``'s contract: the whole pass as one call, under
        ``mx.compile`` when ``compile`` (traced once per batch shape: no Python between mlx-lm's
        layers, element-wise chains fused); the same bits as ``step_shared``."""
        return cache.decode(compiled(self._decode_rows, compile), tokens)

    def _decode_rows(self, tokens: mx.array, keys: list[mx.array], values: list[mx.array],
                     *step: mx.array) -> tuple[mx.array, mx.array, list, list]:  # fmt: skip
        """``decode_shared``'s pass, a pure function of the cache's buffers (to be traced):
        mlx-lm's own call over ``SharedLayer``s of a cache laid over them."""
        cache = self.shared_cache().over(keys, values)
        positions, valid, rows, at = step
        shape = SharedStep(positions, valid, valid.shape[-1], rows, at)
        layers = [SharedLayer(cache, i, shape, tokens.shape[0]) for i in range(cache.n_layers)]
        observation = self._observation
        observation.scores = None  # type: ignore[union-attr]
        logits = self.inner(tokens[:, None], cache=layers)
        scores = observation.scores  # type: ignore[union-attr]
        return logits, scores[:, :, 0].astype(mx.float32), cache.keys, cache.values

    def layer_steps(
        self, inputs: mx.array, cache: list[Any], last_only: bool = False, evaluate: bool = True
    ) -> Generator[None, None, tuple[mx.array, mx.array | None]]:
        """The plain pass with one yield before it (``LayerSteps``: prefills the server
        interleaves, the prefix cache's chunks)."""
        yield
        logits, scores = self(inputs, cache, last_only)
        if evaluate:
            mx.eval(logits, scores, [c.state for c in cache])
        return logits, scores
