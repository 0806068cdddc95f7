"""The rows of a fork's batch: one branch's tokens as they are decoded, and the two drivers of
``fork.explore`` that put branches into rows of a batch and take ended ones out: over mlx-lm
caches (``generate._run``) and over the batch decoder's ``SharedCache`` (``batch.py``)."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from ..uncertainty.step import RowPlan, Rows
from .stream import TOKEN, StopMatcher, top_of

if TYPE_CHECKING:
    from ..models.shared_cache import SharedCache
    from .fork import Ask, Explored

# One step of a fork's branch rows in the batch decoder: their slots, plans (greedy: no key)
# and fed tokens (a step's ``Rows`` whose values are not read).
Branches = tuple[list[int], list[RowPlan], Rows]


def tile_cache(cache: list, n: int) -> None:
    """Copy a one-row KV cache to ``n`` rows, on the device (keys/values along axis 0)."""
    for c in cache:
        c.keys, c.values = mx.repeat(c.keys, n, axis=0), mx.repeat(c.values, n, axis=0)


def select_row(cache: list, row: int, offset: int) -> list:
    """Keep one row of a batched cache, filled up to ``offset``."""
    for c in cache:
        c.keys, c.values = c.keys[row : row + 1], c.values[row : row + 1]
        c.offset = offset
    return cache


def explore_in_cache(
    run: Generator[Ask, list[list[float]], Explored],
    branch_step: Callable[[mx.array, list], Any],
    cache: list,
) -> tuple[Explored, list]:
    """Drive ``fork.explore`` over a one-row mlx-lm cache holding everything before the fork
    token (``generate._run``): each batch of new rows is a cache of its own, copies of it
    (mlx-lm rows share one length), narrowed as its branches end; ``branch_step(tokens,
    cache)`` runs one greedy step of a batch's rows. Returns the choice and the kept row's
    cache (``cache`` itself when the kept branch never had a row: it ended at its first
    token). A row that left its batch is held until the choice where ``explore`` asks (a
    branch that ended at its budget while another still reads its answer cue)."""
    base = cache[0].offset
    batches: list[tuple[list[int], list]] = []  # (row ids, their cache)
    held: dict[int, list] = {}  # rows that left their batch: one row's cache each
    try:
        ids, tokens, keep = next(run)
        while True:
            batch = next((b for b in batches if ids[0] in b[0]), None)
            if batch is None:
                batch = (list(ids), _prompt_copy(cache, base, len(ids)))
                batches.append(batch)
            elif len(ids) < len(batch[0]):  # ended branches leave the batch ...
                for i in (i for i in batch[0] if i not in ids and i in keep):  # ... or held
                    held[i] = [_row_of(c, batch[0].index(i)) for c in batch[1]]
                idx = mx.array([batch[0].index(i) for i in ids])
                for c in batch[1]:
                    c.keys, c.values = c.keys[idx], c.values[idx]
                batch[0][:] = ids
            values = branch_step(mx.array(tokens), batch[1]).packed.tolist()  # one host sync
            ids, tokens, keep = run.send(values)
    except StopIteration as end:
        found: Explored = end.value
    rows, kept = next(((b[1], b[0].index(found.kept)) for b in batches if found.kept in b[0]),
                      (held.get(found.kept, cache), 0))  # fmt: skip
    return found, select_row(rows, kept, base + found.depth)


def _row_of(c: Any, row: int) -> Any:
    """One row of a batched layer cache, the rest of it as it is (a shallow copy)."""
    d = copy.copy(c)
    d.keys, d.values = c.keys[row : row + 1], c.values[row : row + 1]
    return d


def _prompt_copy(cache: list, base: int, n: int) -> list:
    """A new ``n``-row cache holding only the first ``base`` positions of the one-row
    ``cache``, which is left as it is."""
    out = []
    for c in cache:
        d = copy.copy(c)
        d.keys, d.values, d.offset = c.keys[:1], c.values[:1], base
        out.append(d)
    tile_cache(out, n)
    return out


class SlotRows:
    """Drive ``fork.explore`` over a ``SharedCache`` (the batch decoder): each branch row is a
    slot, a copy of the fork's slot's first ``base`` positions; ended rows free theirs."""

    def __init__(self, run: Generator[Ask, list[list[float]], Explored], shared: SharedCache,
                 slot: int, base: int, plan: RowPlan):  # fmt: skip
        self.run, self.shared, self.slot, self.base = run, shared, slot, base
        # the fork row's plan as a branch's (``generate._run``'s): greedy, no key, no pause
        self.plan = plan._replace(mode="greedy", seed=0, width=plan.n_top, n_max=1, clarify_id=None)
        self.slots: dict[int, int] = {}  # row id -> its slot
        self.last: list[int] = []  # the rows of the last step

    def start(self) -> Branches | Explored:
        """The first step of the branch rows, or the choice if no row runs at all."""
        return self._place(lambda: next(self.run))

    def send(self, values: list[list[float]]) -> Branches | Explored:
        """The step's values in: the next step of the branch rows, or the choice."""
        return self._place(lambda: self.run.send(values))

    def _place(self, step: Callable[[], Ask]) -> Branches | Explored:
        try:
            ids, tokens, held = step()
        except StopIteration as end:
            return end.value
        if ids[0] in self.slots:  # the same batch: ended rows leave it, their slots freed
            # but those ``explore`` holds until the choice (``keep``): a branch that ended at
            # its budget, keepable, while another still reads its answer cue
            gone = [i for i in self.last if i not in ids and i not in held]
            self.shared.free([self.slots.pop(i) for i in gone])
        else:
            fresh = self.shared.add(self.shared.row(self.slot), self.base, len(ids))
            self.slots.update(zip(ids, fresh, strict=True))
        self.last, n = list(ids), len(ids)
        fed = Rows(mx.array(tokens), mx.zeros((n,), dtype=mx.bool_), mx.zeros((n,)))
        return [self.slots[i] for i in ids], [self.plan] * n, fed

    def keep(self, found: Explored) -> int:
        """The kept row's slot, at its length (the fork's slot when the kept branch never had
        one); every other slot is freed."""
        slot = self.slots.pop(found.kept, self.slot)
        self.shared.free([s for s in [self.slot, *self.slots.values()] if s != slot])
        self.shared.lengths[slot] = self.base + found.depth
        self.slots = {}
        return slot

    def held(self) -> list[int]:
        return [self.slot, *self.slots.values()]


def margin_of(values: list[float], n_top: int) -> float:
    """p(top1) - p(top2) of the distribution a token was read from."""
    _, lps = top_of(values, n_top)
    return math.exp(lps[0]) - math.exp(lps[1])


@dataclass
class Branch:
    tok: Any
    stops: StopMatcher
    limit: int
    rows: list[list[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    active: bool = True
    end: str = "length"  # why it ended: stop (EOS), stop_string, length (the budget)
    cut: int | None = None  # where a stop string starts in the text
    parent: int | None = None  # an answer fork's branch: the branch it left, at token ``at``
    at: int | None = None
    signal: float | None = None  # the uncertainty that opened it there
    # The answer cue (no reader): its tokens, fed once the branch ends; then up to
    # ``cue_limit`` tokens of what the model says after it (to a line break or a full stop).
    cue: list[int] | None = None
    cue_limit: int = 8
    queue: list[int] | None = None  # the cue's tokens still to feed (None: not there yet)
    cue_texts: list[str] = field(default_factory=list)
    cue_margins: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.detok = self.tok.detokenizer()

    def take(self, values: list[float], margin: float) -> int | None:
        """Record one step's output (``values``, its distribution's ``margin``); the token
        the branch's row feeds next, None when the row is done. Without a cue this is ``add``;
        with one, an ended branch feeds the cue (after its last token when the budget ended
        it; an EOS or a stop string is not fed) and then reads the continuation."""
        if self.queue is None:
            self.add(values, margin)
            if self.active:
                return int(values[TOKEN])
            if not self.cue:
                return None
            self.queue = [int(values[TOKEN])] if self.end == "length" else []
            self.queue += self.cue
            return self.queue.pop(0)
        if self.queue:  # still feeding the cue: this output is the cue's, not the model's
            return self.queue.pop(0)
        token = int(values[TOKEN])
        if token in self.tok.eos_token_ids or len(self.cue_texts) >= self.cue_limit:
            return None
        if not self.cue_texts:
            self.cue_detok = self.tok.detokenizer()
        piece = self.cue_detok.add_token(token)
        self.cue_texts.append(piece)
        self.cue_margins.append(margin)
        said = "".join(self.cue_texts)
        ended = "\n" in said.lstrip() or said.rstrip().endswith(".")
        return None if ended or len(self.cue_texts) >= self.cue_limit else token

    def cue_answer(self) -> str:
        """What the model said after the cue, to its first line break ("" if nothing)."""
        said = "".join(self.cue_texts).strip()
        return said.split("\n")[0].strip()

    def add(self, values: list[float], margin: float) -> None:
        if int(values[TOKEN]) in self.tok.eos_token_ids:
            self.active, self.end = False, "stop"
            return
        before = "".join(self.texts)
        piece = self.detok.add_token(int(values[TOKEN]))
        self.rows.append(values)
        self.texts.append(piece)
        self.margins.append(margin)
        at = self.stops.find(before + piece, len(before))
        if at >= 0:
            self.active, self.end, self.cut = False, "stop_string", at
        elif len(self.rows) >= self.limit:
            self.active = False

    def visible(self) -> list[str]:
        """The token texts as the reader sees them: up to a stop string, which is not text."""
        if self.cut is None:
            return self.texts
        out, pos = [], 0
        for t in self.texts:
            if pos >= self.cut:
                break
            out.append(t[: self.cut - pos])
            pos += len(t)
        return out
