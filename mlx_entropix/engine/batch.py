"""Continuous batching: the requests of several clients decoded together, one step for all.

One decode step on this hardware is bound by reading the weights, so B rows cost little more
than one. ``BatchDecoder`` keeps every running request's rows in one batch: their keys and
values live in one ``SharedCache``, each row at its own length, and a step runs every layer
once over all rows (``Model.decode_shared``); then each row decides and draws under its own key,
``step_key(seed, index)``. A request's events do not depend on what else is in the batch:
bitwise so when the BLAS is batch-invariant (``runtime.blas``; the attention is by
construction, ``shared_cache``). It is the package's one decode loop (``generate.py``).
At a fork (mode fork) the branches become slots, copies of its row's keys, stepping with the
others' rows as ``fork.explore`` asks (``branches.SlotRows``); the kept branch's row goes on.

A new request joins at a step boundary. Its prompt is prefilled layer by layer, a time slice
per ``tick`` between the decode steps of the running rows (a slice per waiting prompt, up to a
cap), the shortest remaining prompt first: a long prompt delays the running streams by about
one slice per token, and a short request that arrives during it is served after one slice.

Driven by whoever consumes its events (``pull``: ``generate``, the server's jobs): ``tick``
runs a round once every request's events are handed out. No threads: one thread owns the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import mlx.core as mx

from ..answers import parse_options
from ..config import Mode, SamplerConfig
from ..errors import GenerationError
from ..events import ErrorEvent
from ..models.shared_cache import observed_keys
from ..uncertainty.step import Step, observe, observe_requests, sample_rows
from .answer_checks import question_text
from .branches import Branches, SlotRows
from .confidence import shipped_model
from .fork import Explored, explore, fork_due, kept_events
from .prefill import Prefill, Prefilled, prefill_long, prefill_short
from .prefix_cache import Extender, PrefixCache, closing_token
from .request import PREFILL_CHUNK, BatchRequest, Event, check_modes, row_plan
from .stream import METRICS, STATE, RowStream, check_finite, finite

if TYPE_CHECKING:
    from ..io.load import LoadedModel

__all__ = ["PREFILL_SLICE_S", "BatchDecoder", "BatchRequest"]
# Prefill work per tick and waiting prompt: about one decode step of a full batch on the 2-core
# CPU, so one long prompt at most halves the running streams' speed. Several waiting prompts
# (a burst of requests) get a slice each, up to PREFILL_SLICE_MAX_S per tick: their first
# tokens then do not wait for a decode step between every two prefills. Ticks are cheap: short
# slices also let a new request (admitted between ticks) start its prefill soon.
PREFILL_SLICE_S = 0.15
PREFILL_SLICE_MAX_S = 1.0
# Prompts up to this many tokens are prefilled together, one row each; longer ones alone, in
# chunks (their late chunks attend to thousands of keys: no short prompt should pay for that).
SHORT_PROMPT = PREFILL_CHUNK


class BatchDecoder:
    def __init__(self, lm: LoadedModel, prefill_slice_s: float = PREFILL_SLICE_S,
                 prefix_cache: PrefixCache | None = None):  # fmt: skip
        self.lm = lm
        self.use_prefix_cache(prefix_cache)
        self.shared = lm.model.shared_cache()
        self.prefill_slice_s = prefill_slice_s
        self.requests: list[BatchRequest] = []
        self.prefills: list[Prefill] = []
        self.steps = 0  # decode steps run (each over every running row)

    def use_prefix_cache(self, prefix: PrefixCache | None) -> None:
        """Keep prompts' KV for later prompts with the same start (``prefix_cache``)."""
        self.prefix_cache = prefix
        ends = self.turn_ends = frozenset(self.lm.tokenizer.eos_token_ids)  # chunks end there
        closing = closing_token(self.lm.tokenizer, ends) if prefix is not None else None
        self.extender = Extender(prefix, self.lm.model, ends, closing=closing) if prefix else None

    # ------------------------------------------------------------------ the consumers' side
    def submit(
        self,
        ids: list[int],
        rows: Sequence[tuple[Mode, int]],
        *,
        config: SamplerConfig | None = None,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        top_logprobs: int = 5,
        should_stop: Callable[[], bool] = lambda: False,
        fmt: str = "chat",
        shown: int | None = None,
    ) -> BatchRequest:
        """Queue a prompt (token ids, already checked: ``request.prepare_prompt``) and its
        rows (mode, seed), each with its own events. ``shown``: the first rows a client sees
        (None: all); the others (hidden sampled rows) never enter the prefix cache."""
        check_modes([m for m, _ in rows], top_logprobs)
        lm, cfg = self.lm, config or self.lm.default_config
        clarify = lm.tokenizer.token_id(cfg.clarifying_token) if cfg.clarifying_token else None
        vocab, t0 = lm.info.vocab_size, time.perf_counter()
        # Two candidates at least: the answer confidence (confidence.py) uses p1 - p2; a fork's
        # branches start from them (and the answer forks' next ones).
        fork = rows[0][0] == "fork"
        widths = (cfg.fork_branches, cfg.fork_answer_branches + 1) if fork else ()
        n_top = max(top_logprobs, 2, *widths)
        # The map and what it checks the answer against (``answer_checks.copied``), if one ships
        model = shipped_model(lm.info.name)
        confidence = (model, fmt, question_text(lm.tokenizer, ids, fmt) if model else None)
        req = BatchRequest(
            ids=list(ids),
            rows=[(m, int(s)) for m, s in rows],
            cfg=cfg,
            budget=min(max_tokens, lm.info.context_length - len(ids)),
            should_stop=should_stop,
            streams=[
                RowStream(lm.tokenizer, m, stop, top_logprobs, n_top, t0, *confidence)
                for m, _ in rows
            ],
            remaining=len(ids),
            shown=len(rows) if shown is None else shown,
            t_prefill=t0,
            plans=[row_plan(cfg, m, int(s), vocab, n_top, clarify) for m, s in rows],
        )
        if fork and cfg.fork_answer_kind == "choice":  # it names an option by its text too
            req.options = parse_options(lm.tokenizer.decode(ids))
        if len(ids) <= SHORT_PROMPT:  # no whole block before its last token: nothing to reuse
            req.waiting = self.prefix_cache is None or not self.prefix_cache.lookup(ids, [])
        else:
            steps = prefill_long(self.lm.model, req, self.prefix_cache, self.turn_ends)
            self.prefills.append(Prefill([req], steps))
        self.requests.append(req)
        return req

    def pull(self, req: BatchRequest) -> Iterator[tuple[int, Event] | None]:
        """``req``'s events as they come; None when it has none yet: its prompt is being
        prefilled, or the others' events go out before the next round (the caller may serve
        someone else meanwhile). A round runs once every request's events are out, so pull all
        submitted requests in turn: one drained to its end alone would wait on the others'
        unread events forever. Leaving early discards the request."""
        try:
            while True:
                while req.events:
                    yield req.events.popleft()
                if req.finished:
                    return
                # a round that only moved this one on (its first token went out at its start):
                # the next at once
                ran = not any(r.events for r in self.requests)
                if ran:
                    self.tick()
                moved = ran and req.current is not None and req.emitted < req.index
                if not req.events and not req.finished and not moved:
                    yield None
        finally:
            self.discard(req)

    def discard(self, req: BatchRequest) -> None:
        """Drop a request (its consumer is gone): its rows leave the batch."""
        self._drop(req)

    def _drop(self, req: BatchRequest, clear: bool = False) -> None:
        if req in self.requests:
            self.requests.remove(req)
        held = req.branches.held() if req.branches else []
        self.shared.free(req.slots + held, clear or req.dirty)  # keys that may hold NaN
        req.slots, req.finished = [], True

    # ------------------------------------------------------------------ one round
    def tick(self) -> None:
        """Queue the next decode step of every running row, read the current one (events),
        then give the prefills a time slice (during which the queued step runs first).

        If it fails (an MLX error, out of memory), every request ends with an ``ErrorEvent``
        and the batch starts afresh; the error is raised to the caller."""
        try:
            self._tick()
        except Exception as err:
            for req in self.requests:
                req.events.extend((r, ErrorEvent(mode=m, message=f"generation failed: {err}"))
                                  for r, (m, _) in enumerate(req.rows))  # fmt: skip
                req.finished, req.slots, req.branches = True, [], None
            self.requests, self.prefills = [], []
            if self.extender is not None:
                self.extender.reset()
            self.shared = self.lm.model.shared_cache()
            raise

    def _tick(self) -> None:
        for req in list(self.requests):
            if req.branches is None and req.should_stop():  # a fork's branches ask themselves
                self._end(req, cancelled=True)
        exploring = [r for r in self.requests if r.branches is not None]
        running = [r for r in self.requests if r.current is not None and r.branches is None]
        if running or exploring:
            self.lm.work_phase(False)
        following = self._decode([r for r in running if r.index + 1 < r.budget] + exploring)
        if running:
            mx.eval([a for r in running for a in r.current.arrays()])  # type: ignore[union-attr]
        for req in running:
            self._guarded(req, lambda r=req: self._read(r, following.get(r)))
        for req in exploring:  # after the others' events: their step ran meanwhile
            values = following[req].packed.tolist()
            self._guarded(req, lambda r=req, v=values: self._branch(r, r.branches.send(v)))  # type: ignore[union-attr]
        waiting = sum(r.current is None for r in self.requests)
        self._prefill_slice(min(self.prefill_slice_s * waiting, PREFILL_SLICE_MAX_S))

    def _decode(self, reqs: list[BatchRequest]) -> dict[BatchRequest, Step]:
        if not reqs:
            return {}
        on, shared = self.lm.compile_steps, self.shared
        order = mx.array([s for r in reqs for s in r.slots])
        tokens = mx.zeros((shared.slots,), dtype=mx.int32)  # free slots and ending rows: 0
        tokens[order] = mx.concatenate([r.current.token for r in reqs]).astype(mx.int32)  # type: ignore[union-attr]
        keys = {r: shared.lengths[r.slots[0]] + 1 for r in reqs}  # type: ignore[operator]
        logits, scores = self.lm.model.decode_shared(tokens, shared, on)
        # each request's attention over its own keys: the shapes (the kernels) it has alone
        window = self.lm.model.last_window
        mine = None if scores is None else [
            observed_keys(scores[mx.array(r.slots)], keys[r], window) for r in reqs]  # fmt: skip
        forward = observe_requests(logits[order], mine, on, self.lm.model.head_group)
        can = mx.concatenate([r.current.can_clarify for r in reqs])  # type: ignore[union-attr]
        plans, group = [p for r in reqs for p in r.plans], self.lm.model.group
        step = sample_rows(*forward, can, plans, [r.index + 1 for r in reqs for _ in r.plans], on,
                           group)  # fmt: skip
        out, start = {}, 0
        for req in reqs:
            rows = slice(start, start + len(req.plans))
            out[req] = Step(*(a[rows] for a in step))
            start = rows.stop
        mx.async_eval([a for rows in out.values() for a in rows.arrays()])
        self.steps += 1
        return out

    def _read(self, req: BatchRequest, following: Step | None) -> None:
        """Turn the current step's values into events; end the request or move it on."""
        if req.emitted < req.index:
            self._emit(req, following is not None)
        if req.branches is not None or req.finished:  # a fork opened (its step is dropped)
            return
        if following is None or all(s.finished for s in req.streams):
            self._end(req)
        else:
            req.current, req.index = following, req.index + 1

    def _emit(self, req: BatchRequest, queued: bool = False) -> None:
        """The events of ``req``'s current step (one host sync), or the fork it opens
        (``queued``: the step after it is queued already)."""
        values = req.current.packed.tolist()  # type: ignore[union-attr]
        if req.index == 0:
            req.t_prefill = time.perf_counter()
        if req.rows[0][0] == "fork":
            check_finite(values[0], req.index)  # before its branches start from a NaN
            req.computed += 1
            trigger = fork_due(req.cfg, req.index, int(values[0][STATE]), values[0][METRICS][0])
            if trigger is not None and req.forks < req.cfg.fork_max_forks:
                req.emitted, req.computed = req.index, req.computed + queued
                req.at_fork = (req.plans[0], req.current)  # type: ignore[assignment]
                run = explore(self.lm.tokenizer, values[0], trigger, req.cfg, req.plans[0].n_top,
                              req.budget - req.index, req.streams[0].stops.stops,
                              req.should_stop, req.options)  # fmt: skip
                at = len(req.ids) + req.index  # the fork token's position
                req.branches = SlotRows(run, self.shared, req.slots[0], at, req.plans[0])
                return self._branch(req, req.branches.send())
        for r, (s, vals) in enumerate(zip(req.streams, values, strict=True)):
            if not s.finished:
                req.generated[r].append(int(vals[0]))
                last = req.index + 1 >= req.budget  # its held-back text joins its event
                req.events.extend((r, e) for e in s.push(vals, last))
                if s.finished:
                    self._close_row(req, r)
            elif not finite(vals):
                req.dirty = True
        req.emitted = req.index

    def _branch(self, req: BatchRequest, step: Branches | Explored) -> None:
        """A fork's next step: its branch rows (greedy: no key) join the batch's next step; or
        the fork is decided: its events, and the request goes on from the kept row."""
        plan, at = req.at_fork  # type: ignore[misc]
        if not isinstance(step, Explored):
            req.slots, req.plans, req.current = step
            return
        found, s = step, req.streams[0]
        req.slots, req.branches = [req.branches.keep(found)], None  # type: ignore[union-attr]
        req.forks, req.computed = req.forks + 1, req.computed + found.event.tokens_computed
        last = req.index + len(found.rows) >= req.budget  # the budget ends with the branch
        req.events.extend((0, e) for e in kept_events(s, found, last))
        req.generated[0] += [int(v[0]) for v in found.rows]
        req.index = req.emitted = req.index + len(found.rows) - 1  # the kept branch's last step
        if s.finished or req.index + 1 >= req.budget:  # a kept EOS at once has no row at all
            return self._end(req)
        last = mx.array(found.rows[-1:])
        req.plans, req.current = [plan], Step(last[:, 0].astype(mx.int32), at.can_clarify, last)

    def _guarded(self, req: BatchRequest, work: Callable[[], None]) -> None:
        """``work`` on ``req``'s events; where the model failed on one of its rows (non-finite
        logits), ``req`` alone ends: an ``ErrorEvent`` on each row still open, its rows leave
        the batch, the other requests go on."""
        try:
            work()
        except GenerationError as err:
            open_rows = [(r, m) for r, (m, _) in enumerate(req.rows) if r not in req.closed]
            req.events.extend((r, ErrorEvent(mode=m, message=str(err))) for r, m in open_rows)
            self._drop(req, clear=True)  # its NaN keys must not reach the slots' next rows

    def _close_row(self, req: BatchRequest, r: int) -> None:
        s = req.streams[r]
        req.events.extend((r, e) for e in s.close())
        fork = {"tokens_computed": req.computed, "forks": req.forks, "t_decode": req.t_prefill}
        done = s.done(len(req.ids), req.t_prefill, req.rows[r][1], cached_tokens=req.cached,
                      **(fork if req.rows[r][0] == "fork" else {}))  # fmt: skip
        req.events.append((r, done))
        req.closed.add(r)

    def _end(self, req: BatchRequest, cancelled: bool = False) -> None:
        unread = req.current is not None and req.branches is None and req.emitted < req.index
        if cancelled and unread:  # its keys are in the slots: NaN where its values are
            values = req.current.packed.tolist()  # type: ignore[union-attr]
            req.dirty = req.dirty or not all(finite(v) for v in values)
        for r, s in enumerate(req.streams):
            if cancelled and not s.finished:
                s.finish, s.finished = "cancelled", True
            if r not in req.closed:
                self._close_row(req, r)
            # A shown row that ended by itself is a conversation's next history, also when
            # the request is cut for its hidden rows (their early end, agreement.py)
            if self.extender is not None and s.finish != "cancelled" and r < req.shown:
                self.extender.add(req.ids + req.generated[r])
        self._drop(req)

    def idle_step(self) -> bool:
        """A layer of the prefix cache's filling (``Extender``) while no request runs, or False."""
        if self.requests or self.extender is None:
            return False
        self.lm.work_phase(True)
        return self.extender.step()

    # ------------------------------------------------------------------ prefill
    def _prefill_slice(self, budget_s: float) -> None:
        """Prefill work until ``budget_s`` has passed (at least one layer), shortest prompts
        first; a cancel (or time limit) is honoured between layers."""
        deadline = time.perf_counter() + budget_s
        while True:
            for req in [r for r in self.requests if r.current is None and r.should_stop()]:
                self._end(req, cancelled=True)
            waiting = [r for r in self.requests if r.waiting]
            if waiting and not any(p.short for p in self.prefills):
                for r in waiting:
                    r.waiting = False
                self.prefills.append(Prefill(waiting, prefill_short(self.lm.model, waiting), True))
            if not self.prefills:
                return
            self.lm.work_phase(True)
            job = min(self.prefills, key=lambda p: max(r.remaining for r in p.reqs))
            if all(r.finished for r in job.reqs):  # all cancelled
                self.prefills.remove(job)
                continue
            try:
                next(job.steps)
            except StopIteration as end:
                self.prefills.remove(job)
                for prompt in end.value:
                    self._start(prompt)
            if self._out_of_time(deadline):
                return

    def _out_of_time(self, deadline: float) -> bool:
        """The prefill slice's end: the one decision of the schedule the clock makes."""
        return time.perf_counter() >= deadline

    def _start(self, prompt: Prefilled) -> None:
        """A prompt is in: the first step (from its last logits) and the request's rows,
        each from a copy of its keys, join the batch at the next tick."""
        req = prompt.req
        if req.finished:
            return
        on, model = self.lm.compile_steps, self.lm.model
        forward = observe(prompt.logits, prompt.scores, on, model.head_group)
        req.slots = self.shared.add(prompt.kv, prompt.length, len(req.rows))
        can = mx.array([p.clarify_id is not None for p in req.plans])
        req.current = sample_rows(*forward, can, req.plans, 0, on, model.group)
        # The first token's events now, not after the next tick queued a decode step of the
        # batch (on the CPU queuing a step runs most of it: a first token waited for a step).
        self._guarded(req, lambda: self._emit(req))
        if req.branches is None and not req.finished and all(s.finished for s in req.streams):
            self._end(req)
