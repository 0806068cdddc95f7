"""Any mlx-lm model behind our ``Model``'s contracts, with the last layer's attention observed
and every layer's attention run in the shared batch (``attention.py``: how, and where the
attention cannot be observed). A sliding-window layer keeps every key, masked to each row's
window. Layers that keep other state (mamba, hybrids: ``ArraysCache``) are refused at load
(``family_model``): entropix reads the attention, and the shared batch holds keys and values.
"""

from __future__ import annotations

import functools
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.cache import KVCache, RotatingKVCache, make_prompt_cache

from ..errors import ModelLoadError
from ..uncertainty.compiled import compiled
from .attention import VERIFIED, SharedLayer, attention_of, observe_last_attention, route_sdpa
from .llama import run_steps
from .protocol import Forward
from .shared_cache import SharedCache, SharedStep

__all__ = ["VERIFIED", "FamilyArgs", "FamilyModel", "family_model", "observe_last_attention"]


def _windows(model: nn.Module, model_type: str) -> list[int | None]:
    """Each layer's sliding window (None: global), from the caches mlx-lm makes for it;
    ``ModelLoadError`` for a layer whose cache is neither (recurrent state, chunks, ...)."""
    windows: list[int | None] = []
    for c in make_prompt_cache(model):
        if type(c) is RotatingKVCache and c.keep == 0:
            windows.append(c.max_size)
        elif type(c) is KVCache:
            windows.append(None)
        else:
            raise ModelLoadError(
                f"model family {model_type!r} keeps a {type(c).__name__} in its layers "
                "(recurrent or other non-attention state): not supported: entropix reads the "
                "last layer's attention, and the shared batch holds only keys and values"
            )
    return windows


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
    """An mlx-lm model with our ``Model``'s contracts (``protocol.py``)."""

    # Tensor-parallel groups (runtime/distributed.py): family models are never split.
    group = None
    head_group = None

    def __init__(self, inner: nn.Module, config: dict[str, Any], any_family: bool = False):
        super().__init__()
        self.inner = inner
        a = getattr(inner, "args", None)
        model_type = str(config.get("model_type") or getattr(a, "model_type", "unknown"))
        self.windows = _windows(inner, model_type)
        # the last layer's window: its observed scores are the window's keys
        self.last_window = self.windows[-1] if self.windows else None
        self._observation = observe_last_attention(inner, any_family)
        attentions = [attention_of(layer) for layer in getattr(inner, "layers", []) or []]
        for attn in filter(None, attentions):  # every SDPA call of a shared batch: ``attend``
            route_sdpa(attn)
        # a family's own attention code (Gemma 2) groups query heads by kv head, or not
        heads, kv = (getattr(attentions[-1] if attentions else None, n, None)
                     for n in ("n_heads", "n_kv_heads"))  # fmt: skip
        self._grouped = not (heads is not None and heads == kv)
        self.args = FamilyArgs(
            model_type=model_type,
            vocab_size=int(config.get("vocab_size") or _config_value(a, "vocab_size") or 0),
            num_hidden_layers=len(attentions),  # one per layer (None: no attention module)
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
        """A plain ``KVCache`` per layer: a sliding layer keeps every key, its window masked
        (mlx-lm's masks do that from the layer's ``window_size``), as in the shared batch."""
        return [KVCache() for _ in self.layers]

    def __call__(self, inputs: mx.array, cache: list[Any], last_only: bool = False) -> Forward:
        logits, scores = self._observed(inputs, cache)
        return logits[:, -1:] if last_only else logits, scores

    def layer_steps(
        self, inputs: mx.array, cache: list[Any], last_only: bool = False, evaluate: bool = True
    ) -> Generator[None, None, Forward]:
        """The plain pass with one yield before it (``protocol.LayerSteps``)."""
        yield
        logits, scores = self(inputs, cache, last_only)
        if evaluate:
            mx.eval(logits, scores, [c.state for c in cache])
        return logits, scores

    def shared_cache(self) -> SharedCache:
        return SharedCache(*self._key_shape)

    @functools.cached_property
    def _key_shape(self) -> tuple[int, int, int, Any]:
        """Layers, kv heads, head size and dtype of the keys, learnt once from one token (the
        families name them differently; every short prefill asks for a cache)."""
        cache = self.make_cache()
        self.inner(mx.zeros((1, 1), dtype=mx.int32), cache=cache)
        shapes = {(c.keys.shape[1], c.keys.shape[3], c.keys.dtype) for c in cache}
        if len(shapes) > 1:
            raise ModelLoadError(f"model family {self.args.model_type!r}: its layers' keys "
                                 "differ in shape; they cannot share one cache")  # fmt: skip
        ((heads, size, dtype),) = shapes
        return len(cache), heads, size, dtype

    def check_shared(self) -> None:
        """One token through the shared batch (at load): a family whose attention cannot join
        it (attention sinks, per-head scales, a cache it uses otherwise) fails here, clearly."""
        try:
            cache = self.shared_cache()
            cache.add([], 0, 1)
            run_steps(self.step_shared(mx.zeros((1, 1), dtype=mx.int32), cache))
        except (ValueError, TypeError, AttributeError) as err:
            raise ModelLoadError(f"model family {self.args.model_type!r} cannot be served by "
                                 f"the shared batch: {err}") from None  # fmt: skip

    def _layers_of(self, cache: SharedCache, step: SharedStep, rows: int) -> list[SharedLayer]:
        masks: dict[int | None, mx.array] = {}  # one mask per window and step
        return [SharedLayer(cache, i, step, rows, w, masks, self._grouped)
                for i, w in enumerate(self.windows)]  # fmt: skip

    def _observed(self, tokens: mx.array, cache: list) -> Forward:
        """mlx-lm's pass over ``cache`` (its caches or ``SharedLayer``s), and the scores."""
        observation = self._observation
        if observation is not None:
            observation.scores = None
        logits = self.inner(tokens, cache=cache)
        return logits, observation.scores if observation is not None else None

    def step_shared(self, tokens: mx.array, cache: SharedCache, counts: list[int] | None = None,
                    evaluate: bool = False) -> Generator[None, None, Forward]:  # fmt: skip
        """``llama.Model.step_shared``'s contract; mlx-lm runs its layers as one call, so the
        pass yields once before it, not between layers."""
        tokens = tokens.reshape(tokens.shape[0], -1)
        step = cache.begin_step(tokens.shape[1], counts)
        yield
        logits, scores = self._observed(tokens, self._layers_of(cache, step, tokens.shape[0]))
        if evaluate:
            mx.eval(logits, scores, cache.keys, cache.values)
        cache.end_step()
        yield
        if scores is not None:
            scores = cache.at_last(scores, 2)[:, :, 0].astype(mx.float32)
        return cache.at_last(logits, 1), scores

    def decode_shared(self, tokens: mx.array, cache: SharedCache, compile: bool = True) -> Forward:
        """``llama.Model.decode_shared``'s contract: mlx-lm's whole pass as one call."""
        logits, scores = cache.decode(compiled(self._decode_rows, compile), tokens)
        return logits, scores if self._observation is not None else None

    def _decode_rows(self, tokens: mx.array, keys: list[mx.array], values: list[mx.array],
                     *step: mx.array) -> tuple[mx.array, mx.array, list, list]:  # fmt: skip
        """``decode_shared``'s pass, a pure function of the cache's buffers (to be traced):
        mlx-lm's own call over ``SharedLayer``s of a cache laid over them (unobserved: empty
        scores, a traced function returns arrays)."""
        cache = self.shared_cache().over(keys, values)
        positions, valid, rows, at = step
        shape = SharedStep(positions, valid, valid.shape[-1], rows, at)
        logits, scores = self._observed(
            tokens[:, None], self._layers_of(cache, shape, tokens.shape[0])
        )
        scores = mx.zeros((0,)) if scores is None else scores[:, :, 0].astype(mx.float32)
        return logits, scores, cache.keys, cache.values


def family_model(inner: nn.Module, config: dict[str, Any]) -> FamilyModel:
    """``inner`` behind our contract, checked at load to join the shared batch
    (``ModelLoadError`` if it cannot: recurrent layers, attention sinks, ...)."""
    model = FamilyModel(inner, config)
    model.check_shared()
    return model
