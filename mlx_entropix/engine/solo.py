"""The loop for the requests the shared batch (``batch.py``) cannot serve: fork mode, the
mlx-lm family models (``models/families.py``) and every request under ``mlx.launch``.

One prompt, B rows from one prefill (its KV cache copied to B rows on the device), each row
with its own mode, seed and stream of events, one host sync per step for all rows. Step n+1 is
queued (``mx.async_eval``) before step n is read. Fork mode decodes its branches as such a
batch (``fork.py``): at a fork the cache is trimmed, the branches explored, the kept row's
cache carried on. The prompt is prefilled a layer at a time (None after each layer), so a
scheduler can serve others meanwhile; the same operations as one pass, so the same results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import mlx.core as mx

from ..answers import parse_options
from ..config import Mode, SamplerConfig
from ..events import DoneEvent, ForkEvent, TokenEvent
from ..models.llama import Cancelled, checked_steps
from ..models.protocol import LayerSteps
from ..uncertainty.sampler import step_key
from ..uncertainty.step import RowPlan, Step, observe, sample_rows, sample_step
from .confidence import shipped_model
from .fork import explore, fork_due, select_row, tile_cache
from .request import PREFILL_CHUNK, clarify_token, compile_steps, row_plan
from .stream import METRICS, STATE, TOKEN, RowStream

if TYPE_CHECKING:
    from ..io.load import LoadedModel

__all__ = ["Row", "run"]
Event = TokenEvent | ForkEvent | DoneEvent


def _forward(lm: LoadedModel, tokens: mx.array, cache: list) -> tuple[mx.array, ...]:
    """One decode step's forward pass, a token per row, lazily: last logits (B, V), metrics
    (B, 6) and the log of the softmax normaliser (B,)."""
    logits, scores = lm.model(tokens.reshape(-1, 1), cache)
    return observe(logits, scores, compile_steps(lm), lm.model.head_group)


def _prefill(
    lm: LoadedModel, ids: list[int], cache: list, should_stop: Callable[[], bool] | None
) -> Generator[None, None, tuple[mx.array, ...] | None]:
    """The prompt's pass in ``PREFILL_CHUNK`` chunks (bounding its peak memory), yielding
    between layers (between chunks for a model without ``layer_steps``), each evaluated before
    the yield, ``should_stop`` checked between them: the caller can serve others meanwhile,
    and a cancel lands within one layer. What ``_forward`` gives; None when cancelled."""
    chunks = _chunks(ids)
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
    return observe(logits, scores, compile_steps(lm), lm.model.head_group)


def _chunks(ids: list[int]) -> list[mx.array]:
    return [mx.array(ids[i : i + PREFILL_CHUNK])[None] for i in range(0, len(ids), PREFILL_CHUNK)]


class Row(NamedTuple):
    mode: Mode
    seed: int


def run(
    lm: LoadedModel,
    ids: list[int],
    rows: list[Row],
    cfg: SamplerConfig,
    max_tokens: int,
    stop: Sequence[str],
    top_logprobs: int,
    should_stop: Callable[[], bool] | None,
    fmt: str = "chat",
) -> Iterator[tuple[int, Event] | None]:
    """``(row, event)`` of every row, None after each layer of the prefill. Checked before
    (``generate.generate_rows``)."""
    clarify_id = clarify_token(lm, cfg)
    budget = min(max_tokens, lm.info.context_length - len(ids))
    fork = rows[0].mode == "fork"
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
        RowStream(lm.tokenizer, r.mode, stop, top_logprobs, n_top, t_start, conf, fmt) for r in rows
    ]
    plans = [row_plan(cfg, r.mode, r.seed, vocab, n_top, clarify_id) for r in rows]

    def step(forward: tuple[mx.array, ...], can: mx.array, index: int) -> Step:
        """Each row decides and draws under its own key, as it would alone."""
        return sample_rows(*forward, can, plans, index, compile_steps(lm), lm.model.group)

    def branch_step(tokens: mx.array, cache: list) -> Step:
        """All branches of a fork at once: greedy needs no key."""
        fwd = _forward(lm, tokens, cache)
        can = mx.zeros(tokens.shape, dtype=mx.bool_)
        greedy = RowPlan("greedy", 0, cfg, n_top, 1, n_top, None)
        return sample_step(*fwd, can, step_key(0, 0), greedy, compile_steps(lm), lm.model.group)

    def queue(index: int) -> Step | None:
        """Step ``index`` from the current token, queued on the device; None past the budget."""
        if index >= budget:
            return None
        queued = step(_forward(lm, current.token, cache), current.can_clarify, index)
        mx.async_eval(queued)
        return queued

    cache = lm.model.make_cache()
    forward = yield from _prefill(lm, ids, cache, should_stop)
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
        yield r, streams[r].done(len(ids), t_prefill, rows[r].seed, **extra)

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
            found = explore(
                lm.tokenizer, branch_step, cache, values[0], trigger, cfg, n_top,
                budget - index, stop, should_stop, options,
            )  # fmt: skip
            forks += 1
            computed += found.event.tokens_computed + (following is not None)
            event = found.event.model_copy(update={"index": streams[0].n})
            yield from ((0, e) for e in streams[0].add_fork(event))
            for vals in found.rows:
                yield from ((0, e) for e in streams[0].push(vals))
                if streams[0].finished:
                    break
            if found.ended and not streams[0].finished:
                streams[0].finish, streams[0].finished = "stop", True
            index += len(found.rows)
            if streams[0].finished or index >= budget:
                break
            cache = select_row(cache, found.row, found.offset)
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
