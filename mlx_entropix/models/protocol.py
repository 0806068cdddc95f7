"""What the engine asks of a model: the contracts ``Model`` (our Llama) and ``FamilyModel``
(any family mlx-lm runs) meet, written down once instead of checked with ``hasattr``.

A model runs its pass a layer at a time (``LayerSteps``: a prefill the server interleaves
with other work, the prefix cache's chunks) and decodes the rows of many requests in one cache
(``SharedBatch``: continuous batching, the engine's one decode loop).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Protocol, runtime_checkable

import mlx.core as mx

Forward = tuple[mx.array, mx.array | None]  # logits (B, L or 1, V), last-layer scores or None


@runtime_checkable
class LayerSteps(Protocol):
    @property
    def layers(self) -> list[Any]: ...

    def layer_steps(
        self, inputs: mx.array, cache: list[Any], last_only: bool = False, evaluate: bool = True
    ) -> Generator[None, None, Forward]:
        """Tokens (B, L) in, over one mlx-lm cache per layer, yielding before each layer
        (``yield from`` it to interleave); returns the logits and the last query's pre-softmax
        scores of the last layer over the filled keys (B, heads, K), None where the attention
        cannot be observed."""


@runtime_checkable
class SharedBatch(Protocol):
    # Under ``mlx.launch`` (``runtime.distributed``): ``group``, every rank continues with rank
    # 0's token; ``head_group``, set when the heads are split (scores hold this rank's heads).
    group: mx.distributed.Group | None
    head_group: mx.distributed.Group | None
    # The last layer's sliding window (None: global): its scores cover a row's last keys.
    last_window: int | None

    def shared_cache(self) -> Any:
        """An empty ``shared_cache.SharedCache`` for this model's layers and heads."""

    def step_shared(
        self, tokens: mx.array, cache: Any, counts: list[int] | None = None, evaluate: bool = False
    ) -> Generator[None, None, Forward]:
        """One step of every row of ``cache``, each at its own length (a layer per yield)."""

    def decode_shared(self, tokens: mx.array, cache: Any, compile: bool = True) -> Forward:
        """A decode step (a token per row) of every row of ``cache`` in one call."""
