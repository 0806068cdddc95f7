"""The shared batch's prefills (``batch.py``), a layer per ``next()`` so the decoder
interleaves them with its decode steps: a long prompt alone, short prompts together."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import mlx.core as mx

from ..models.shared_cache import observed_keys
from .prefix_cache import PrefixCache, TurnEnds, prefill_chunks

if TYPE_CHECKING:
    from ..models.protocol import LayerSteps, SharedBatch
    from .request import BatchRequest

__all__ = ["Prefill", "Prefilled", "prefill_long", "prefill_short"]


@dataclass
class Prefilled:
    """A prefilled prompt: its keys and values per layer, length, last logits and scores."""

    req: BatchRequest
    kv: list[tuple[mx.array, mx.array]]
    length: int
    logits: mx.array
    scores: mx.array | None


@dataclass
class Prefill:
    """Prefill work in progress: one long prompt, or short ones together (``short``)."""

    reqs: list[BatchRequest]
    steps: Generator[None, None, list[Prefilled]]
    short: bool = False


def prefill_long(
    model: LayerSteps, req: BatchRequest, prefix: PrefixCache | None, turn_ends: TurnEnds
) -> Generator[None, None, list[Prefilled]]:
    """A long prompt alone, a layer at a time, in chunks ending at its turns' ends (as in
    ``prefix_cache``), from the blocks the prefix cache holds (the same bits as without)."""

    def progress(n: int) -> None:
        req.remaining -= n

    cache, req.cached, logits, scores = yield from prefill_chunks(
        model, req.ids, prefix, turn_ends, progress=progress
    )
    kv = [(c.keys[0], c.values[0]) for c in cache]
    return [Prefilled(req, kv, len(req.ids), logits, scores)]  # type: ignore[arg-type]


def prefill_short(
    model: SharedBatch, reqs: list[BatchRequest]
) -> Generator[None, None, list[Prefilled]]:
    """Short prompts together, one row each (right-padded), a layer at a time, in a cache of
    their own; each row's results are those of its prompt alone (``step_shared``)."""
    cache = model.shared_cache()
    rows = [cache.add([], 0, 1)[0] for _ in reqs]
    width = max(len(r.ids) for r in reqs)
    tokens = mx.array([r.ids + [0] * (width - len(r.ids)) for r in reqs])
    counts = [len(r.ids) for r in reqs]
    logits, scores = yield from model.step_shared(tokens, cache, counts, evaluate=True)
    for r in reqs:
        r.remaining = 0
    window = model.last_window
    return [
        Prefilled(r, cache.row(b), n, logits[b : b + 1],
                  None if scores is None else observed_keys(scores[b : b + 1], n, window))
        for r, b, n in zip(reqs, rows, counts, strict=True)
    ]  # fmt: skip
