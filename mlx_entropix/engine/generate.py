"""The engine's front door: one request in, one typed event per token, then a summary.

A request the shared batch can serve (our Llama in one process, any mode:
``BatchDecoder.supports``) is submitted to a ``BatchDecoder`` and its events drained: the
server's (``decoder=``, shared with every running request) or one of its own (the CLI, the
evaluation harness: no prefix cache). So every front end decodes a request with the same
prefill, step and events. Either way, per step, all on the device: the forward pass, the six
metrics, the decision and the draw; step n+1 is queued before step n is read in one host sync,
so the device keeps working while the CLI prints or the server streams.

``_run`` serves what the decoder cannot: mlx-lm families without plain KV caches
(``families.py``; never split over ranks). One prompt, B rows from one prefill in an mlx-lm cache
(copied to B rows), each its own mode, seed and events; fork mode decodes its branches as such
a batch (``fork.explore`` over mlx-lm caches, ``branches.explore_in_cache``): at a fork the
cache is trimmed, the branches explored, the kept row's cache carried on.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from ..answers import parse_options
from ..config import Mode, SamplerConfig
from ..errors import InvalidRequestError
from ..events import DoneEvent, ForkEvent, TokenEvent
from ..models.llama import Cancelled, checked_steps
from ..models.protocol import LayerSteps
from ..uncertainty.sampler import step_key
from ..uncertainty.step import RowPlan, Step, observe, sample_rows, sample_step
from .batch import BatchDecoder
from .branches import explore_in_cache, tile_cache
from .confidence import shipped_model
from .fork import explore, fork_due, kept_events
from .request import PREFILL_CHUNK, Prompt, check_mode, clarify_token, row_plan
from .request import prepare_prompt as prepare_prompt  # the front ends' prompt check
from .stream import METRICS, STATE, TOKEN, RowStream

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from ..io.load import LoadedModel

__all__ = ["PREFILL_CHUNK", "Prompt", "generate", "generate_batch", "generate_rows",
           "prepare_prompt"]  # fmt: skip
Event = TokenEvent | ForkEvent | DoneEvent


def generate(
    lm: LoadedModel,
    prompt: Prompt,
    *,
    mode: Mode = "entropix",
    config: SamplerConfig | None = None,
    max_tokens: int = 256,
    seed: int | None = None,
    stop: Sequence[str] = (),
    system: str | None = None,
    top_logprobs: int = 5,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[Event]:
    """Yield a ``TokenEvent`` per generated token (and a ``ForkEvent`` before the tokens of
    each explored fork, mode fork), then one ``DoneEvent``. Raises ``InvalidRequestError`` /
    ``PromptTooLongError`` before the first event."""
    return generate_batch(
        lm, prompt, modes=[mode], seeds=[seed], config=config, max_tokens=max_tokens,
        stop=stop, system=system, top_logprobs=top_logprobs, should_stop=should_stop,
    )  # fmt: skip


def generate_batch(
    lm: LoadedModel, prompt: Prompt, *, modes: Sequence[Mode], **options: Any
) -> Iterator[Event]:
    """Several rows decoded as one batch from one prefill: row r runs ``modes[r]`` with
    ``seeds[r]`` and gives exactly the events of ``generate`` with that mode and seed. Events
    of a step come in row order (each carries its ``mode``); each row ends with its own
    ``DoneEvent``. A missing seed is drawn once and shared by every row (the compare view).
    Fork mode runs alone (its branches are the batch). Options: those of ``generate_rows``.
    """
    return (event for _, event in generate_rows(lm, prompt, modes=modes, **options))


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
) -> Iterator[tuple[int, Event] | None]:
    """``generate_batch``'s events as ``(r, event)``: r is the row the event belongs to, which
    tells apart rows of the same mode (several choices of one request, each its own seed).
    ``idle``: a ``None`` item whenever the request has nothing yet (after each layer of its
    prefill; in a shared ``decoder``, a step for the others), so a scheduler can run other work
    between them (the tokens are the same). ``fmt``: the prompt's format for the answer
    confidence, "chat" or "raw" (default: raw for token ids). ``decoder``: the shared batch to
    join (the server's); by default a decoder of its own.
    Raises ``InvalidRequestError`` / ``PromptTooLongError`` before the first event."""
    if not modes:
        raise InvalidRequestError("no mode to run")
    for mode in modes:
        check_mode(mode, top_logprobs)
    if "fork" in modes and len(modes) > 1:
        raise InvalidRequestError("fork mode runs alone (its branches are the batch)")
    ids = prepare_prompt(lm, prompt, system, max_tokens)
    cfg = config or lm.default_config
    shared = secrets.randbelow(2**31)
    seeds = [shared if s is None else int(s) for s in (seeds or [None] * len(modes))]
    if len(seeds) != len(modes):
        raise InvalidRequestError("one seed per mode")
    rows = list(zip(modes, seeds, strict=True))
    if fmt is None:
        fmt = "raw" if all(isinstance(t, int) for t in prompt) and prompt else "chat"
    if not BatchDecoder.supports(lm):
        items = _run(lm, ids, rows, cfg, max_tokens, stop, top_logprobs, should_stop, fmt)
    else:  # the one decode loop; a decoder of its own prefills a layer per item
        decoder = decoder or BatchDecoder(lm, prefill_slice_s=0.0)
        req = decoder.submit(ids, rows, config=cfg, max_tokens=max_tokens, stop=stop,
                             top_logprobs=top_logprobs, should_stop=should_stop or (lambda: False),
                             fmt=fmt)  # fmt: skip
        items = decoder.pull(req)  # type: ignore[assignment]
    return items if idle else (item for item in items if item is not None)


def _forward(lm: LoadedModel, tokens: mx.array, cache: list) -> tuple[mx.array, ...]:
    """One decode step's forward pass, a token per row, lazily: last logits (B, V), metrics
    (B, 6) and the log of the softmax normaliser (B,)."""
    logits, scores = lm.model(tokens.reshape(-1, 1), cache)
    return observe(logits, scores, lm.compile_steps)


def _prefill(
    lm: LoadedModel, ids: list[int], cache: list, should_stop: Callable[[], bool] | None
) -> Generator[None, None, tuple[mx.array, ...] | None]:
    """The prompt's pass in ``PREFILL_CHUNK`` chunks (bounding its peak memory), yielding
    between layers (between chunks for a model without ``layer_steps``), each evaluated before
    the yield, ``should_stop`` checked between them: the caller can serve others meanwhile,
    and a cancel lands within one layer. What ``_forward`` gives; None when cancelled."""
    chunks = _chunks(ids)
    lm.work_phase(True)
    try:
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if isinstance(lm.model, LayerSteps):
                steps = lm.model.layer_steps(chunk, cache, last_only=last, evaluate=True)
                logits, scores = yield from checked_steps(steps, should_stop)
            else:
                logits, scores = lm.model(chunk, cache, last_only=last, should_stop=should_stop)
                mx.eval([c.state for c in cache])
                yield
    except Cancelled:
        return None
    return observe(logits, scores, lm.compile_steps)


def _chunks(ids: list[int]) -> list[mx.array]:
    return [mx.array(ids[i : i + PREFILL_CHUNK])[None] for i in range(0, len(ids), PREFILL_CHUNK)]


def _run(
    lm: LoadedModel,
    ids: list[int],
    rows: list[tuple[Mode, int]],
    cfg: SamplerConfig,
    max_tokens: int,
    stop: Sequence[str],
    top_logprobs: int,
    should_stop: Callable[[], bool] | None,
    fmt: str = "chat",
) -> Iterator[tuple[int, Event] | None]:
    """``(row, event)`` of every ``rows[r]`` (mode, seed), None after each layer of the
    prefill. Checked before (``generate.generate_rows``)."""
    clarify_id = clarify_token(lm, cfg)
    budget = min(max_tokens, lm.info.context_length - len(ids))
    fork = rows[0][0] == "fork"
    # At least two candidates: the answer confidence uses the first token's margin p1 - p2.
    widths = (cfg.fork_branches, cfg.fork_answer_branches + 1) if fork else ()  # + own token
    n_top = max(top_logprobs, 2, *widths)
    # The choice reader names an option by its text too: the options are the prompt's.
    choice = fork and cfg.fork_answer_kind == "choice"
    options = parse_options(lm.tokenizer.decode(ids)) if choice else None
    vocab = lm.info.vocab_size
    t_start = time.perf_counter()
    t_prefill = t_start
    conf = shipped_model(lm.info.name)
    streams = [
        RowStream(lm.tokenizer, m, stop, top_logprobs, n_top, t_start, conf, fmt) for m, _ in rows
    ]
    plans = [row_plan(cfg, m, seed, vocab, n_top, clarify_id) for m, seed in rows]

    def step(forward: tuple[mx.array, ...], can: mx.array, index: int) -> Step:
        """Each row decides and draws under its own key, as it would alone."""
        return sample_rows(*forward, can, plans, index, lm.compile_steps)

    def branch_step(tokens: mx.array, cache: list) -> Step:
        """All branches of a fork at once: greedy needs no key."""
        fwd = _forward(lm, tokens, cache)
        can = mx.zeros(tokens.shape, dtype=mx.bool_)
        greedy = RowPlan("greedy", 0, cfg, n_top, 1, n_top, None)
        return sample_step(*fwd, can, step_key(0, 0), greedy, lm.compile_steps)

    def queue(index: int) -> Step | None:
        """Step ``index`` from the current token, queued on the device; None past the budget."""
        if index >= budget:
            return None
        queued = step(_forward(lm, current.token, cache), current.can_clarify, index)
        mx.async_eval(queued)
        return queued

    cache = lm.model.make_cache()
    forward = yield from _prefill(lm, ids, cache, should_stop)
    lm.work_phase(False)
    if forward is None:  # cancelled (or out of time) during the prefill: no token at all
        for s in streams:
            s.finish, s.finished = "cancelled", True
        budget = 0
    elif len(rows) > 1:  # one prefill; every row starts from a copy of its cache
        tile_cache(cache, len(rows))
    if forward is not None:
        current = step(forward, mx.array([clarify_id is not None] * len(rows)), 0)
        mx.async_eval(current)
    index, forks, computed = 0, 0, 0
    closed: set[int] = set()

    def finish_row(r: int) -> Iterator[tuple[int, Event]]:
        closed.add(r)
        yield from ((r, e) for e in streams[r].close())
        extra = {"tokens_computed": computed, "forks": forks, "t_decode": t_prefill} if fork else {}
        yield r, streams[r].done(len(ids), t_prefill, rows[r][1], **extra)

    while index < budget:
        if should_stop is not None and should_stop():
            for s in streams:
                if not s.finished:
                    s.finish, s.finished = "cancelled", True
            break
        # Step n+1 is queued on the device before step n is read, except after the first
        # token: MLX's async_eval returns only once all but ~100 ops of the graphs before it
        # have run (10 tasks in flight at most), so the first token would wait for step 1.
        following = queue(index + 1) if index > 0 else None
        values = current.packed.tolist()  # the one host sync of this step, all rows
        computed += len(rows)
        if index == 0:
            t_prefill = time.perf_counter()
        trigger = (
            fork_due(cfg, index, int(values[0][STATE]), values[0][METRICS][0]) if fork else None
        )
        if trigger is not None and forks < cfg.fork_max_forks:
            if following is not None:  # it fed the greedy token: take it back out
                for c in cache:
                    c.trim(1)
            run = explore(lm.tokenizer, values[0], trigger, cfg, n_top, budget - index, stop,
                          should_stop, options)  # fmt: skip
            found, cache = explore_in_cache(run, branch_step, cache)
            forks += 1
            computed += found.event.tokens_computed + (following is not None)
            yield from ((0, e) for e in kept_events(streams[0], found))
            index += len(found.rows)
            if streams[0].finished or index >= budget:
                break
            last = mx.array([int(found.rows[-1][TOKEN])])
            current = step(_forward(lm, last, cache), current.can_clarify[:1], index)
            mx.async_eval(current)
            continue
        for r, (s, vals) in enumerate(zip(streams, values, strict=True)):
            if not s.finished:
                yield from ((r, e) for e in s.push(vals))
                if s.finished:  # this row is done; the others go on (its row idles along)
                    yield from finish_row(r)
        if index == 0 and not all(s.finished for s in streams):
            following = queue(1)  # after the first token's events were handed out
        if all(s.finished for s in streams) or following is None:
            break
        index += 1
        current = following

    for r in range(len(rows)):
        if r not in closed:
            yield from finish_row(r)
