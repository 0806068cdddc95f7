"""The engine's front door: one request in, one typed event per token, then a summary.

Every request, of every model (our Llama, split under ``mlx.launch`` or not; any mlx-lm
family), is submitted to a ``BatchDecoder`` and its events drained: the server's (``decoder=``,
shared with every running request) or one of its own (the CLI, the evaluation harness: no
prefix cache). So every front end decodes a request with the same prefill, step and events:
the package's one decode path (``batch.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..config import Mode, SamplerConfig
from ..errors import GenerationError, InvalidRequestError
from ..events import ErrorEvent
from .agreement import HIDDEN_MODE, done_early, hidden_seeds, samples_for, with_agreement
from .batch import BatchDecoder
from .request import PREFILL_CHUNK, Event, Prompt, check_modes, prepare_prompt

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from ..io.load import LoadedModel

__all__ = ["PREFILL_CHUNK", "Prompt", "generate", "generate_batch", "generate_rows",
           "prepare_prompt"]  # fmt: skip


def generate(
    lm: LoadedModel,
    prompt: Prompt,
    *,
    mode: Mode = "entropix",
    seed: int | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Yield a ``TokenEvent`` per generated token (and a ``ForkEvent`` before the tokens of
    each explored fork, mode fork), then one ``DoneEvent``. Raises ``InvalidRequestError`` /
    ``PromptTooLongError`` before the first event, ``GenerationError`` where the model fails
    (non-finite logits) after the events before it. Options: those of ``generate_rows``."""
    return generate_batch(lm, prompt, modes=[mode], seeds=[seed], **options)


def generate_batch(
    lm: LoadedModel, prompt: Prompt, *, modes: Sequence[Mode], **options: Any
) -> Iterator[Event]:
    """Several rows decoded as one batch from one prefill: row r runs ``modes[r]`` with
    ``seeds[r]`` and gives exactly the events of ``generate`` with that mode and seed. Events
    of a step come in row order (each carries its ``mode``); each row ends with its own
    ``DoneEvent``. A missing seed is drawn once and shared by every row (the compare view).
    Fork mode runs alone (its branches are the batch). Raises as ``generate``. Options: those of
    ``generate_rows``.
    """
    return raising(event for _, event in generate_rows(lm, prompt, modes=modes, **options))


def raising(events: Iterator[Event]) -> Iterator[Event]:
    """The events up to an ``ErrorEvent``, which is raised (``GenerationError``) instead."""
    for event in events:
        if isinstance(event, ErrorEvent):
            raise GenerationError(event.message)
        yield event


def generate_rows(
    lm: LoadedModel,
    prompt: Prompt,
    *,
    modes: Sequence[Mode],
    seeds: Sequence[int | None] | None = None,
    config: SamplerConfig | None = None,
    max_tokens: int = 256,
    stop: Sequence[str] = (),
    system: str | None = None,
    top_logprobs: int = 5,
    should_stop: Callable[[], bool] | None = None,
    idle: bool = False,
    fmt: str | None = None,
    decoder: BatchDecoder | None = None,
    confidence_samples: int | None = None,
) -> Iterator[tuple[int, Event] | None]:
    """``generate_batch``'s events as ``(r, event)``: r is the row the event belongs to, which
    tells apart rows of the same mode (several choices of one request, each its own seed).
    ``idle``: a ``None`` item whenever the request has nothing yet (after each layer of its
    prefill; in a shared ``decoder``, a step for the others), so a scheduler can run other work
    between them (the tokens are the same). ``fmt``: the prompt's format for the answer
    confidence, "chat" or "raw" (default: raw for token ids). ``decoder``: the shared batch to
    join (the server's); by default a decoder of its own. ``confidence_samples``: hidden rows
    whose answers' agreement is reported (``agreement.py``; None: the format's default).
    Raises ``InvalidRequestError`` / ``PromptTooLongError`` before the first event; where the
    model fails (non-finite logits) the request's open rows end with an ``ErrorEvent`` each."""
    check_modes(modes, top_logprobs)
    ids = prepare_prompt(lm, prompt, system, max_tokens)
    cfg = config or lm.default_config
    shared = secrets.randbelow(2**31)
    seeds = [shared if s is None else int(s) for s in (seeds or [None] * len(modes))]
    if len(seeds) != len(modes):
        raise InvalidRequestError("one seed per mode")
    rows = list(zip(modes, seeds, strict=True))
    if fmt is None:
        fmt = "raw" if all(isinstance(t, int) for t in prompt) and prompt else "chat"
    try:
        k = samples_for(confidence_samples, fmt, modes)
    except ValueError as err:
        raise InvalidRequestError(str(err)) from None
    rows += [(HIDDEN_MODE, s) for s in hidden_seeds(seeds[0], k)]
    stop_asked = should_stop or (lambda: False)
    early: list[Callable[[], bool]] = []  # the hidden rows' end, once the streams exist
    # the one decode loop; a decoder of its own prefills a layer per item
    decoder = decoder or BatchDecoder(lm, prefill_slice_s=0.0)
    req = decoder.submit(ids, rows, config=cfg, max_tokens=max_tokens, stop=stop,
                         top_logprobs=top_logprobs, fmt=fmt, shown=len(modes),
                         should_stop=lambda: stop_asked() or any(e() for e in early))  # fmt: skip
    items = decoder.pull(req)
    if k:
        early.append(done_early(req.streams, len(modes)))
        items = with_agreement(items, req.streams, len(modes), req.streams[0].confidence, fmt)
    return items if idle else (item for item in items if item is not None)
