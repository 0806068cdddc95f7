"""The rows of a fork's batch: one branch's tokens as they are decoded, and the driver of
``fork.explore`` that puts branches into rows of the batch decoder's ``SharedCache``
(``batch.py``) and takes ended ones out."""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from ..uncertainty.step import RowPlan, Step
from .stream import TOKEN, StopMatcher, finite, top_of

if TYPE_CHECKING:
    from ..models.shared_cache import SharedCache
    from .fork import Ask, Explored

# One step of a fork's branch rows in the batch decoder: their slots, plans (greedy: no key)
# and fed tokens (a ``Step`` whose values are not read).
Branches = tuple[list[int], list[RowPlan], Step]


class SlotRows:
    """Drive ``fork.explore`` over a ``SharedCache`` (the batch decoder): each branch row is a
    slot, a copy of the fork's slot's first ``base`` positions; ended rows free theirs."""

    def __init__(self, run: Generator[Ask, list[list[float]], Explored], shared: SharedCache,
                 slot: int, base: int, plan: RowPlan):  # fmt: skip
        self.run, self.shared, self.slot, self.base = run, shared, slot, base
        # the fork row's plan as a branch's: greedy, no key, no pause
        self.plan = plan._replace(mode="greedy", seed=0, width=plan.n_top, n_max=1, clarify_id=None)
        self.slots: dict[int, int] = {}  # row id -> its slot
        self.last: list[int] = []  # the rows of the last step
        # A branch's logits were not finite: its slot holds NaN keys, which a later row in the
        # slot would read (0 * NaN in p @ V): the slots it frees from then on are zeroed
        self.dirty = False

    def send(self, values: list[list[float]] | None = None) -> Branches | Explored:
        """The step's values in (None: before the first step): the next step of the branch
        rows, or the choice (at once if no row runs at all)."""
        self.dirty = self.dirty or not all(finite(v) for v in values or [])
        try:
            ids, tokens, held = next(self.run) if values is None else self.run.send(values)
        except StopIteration as end:
            return end.value
        if ids[0] in self.slots:  # the same batch: ended rows leave it, their slots freed
            # but those ``explore`` holds until the choice (``keep``; ``fork.Ask``)
            gone = [i for i in self.last if i not in ids and i not in held]
            self.shared.free([self.slots.pop(i) for i in gone], self.dirty)
        else:
            fresh = self.shared.add(self.shared.row(self.slot), self.base, len(ids))
            self.slots.update(zip(ids, fresh, strict=True))
        self.last, n = list(ids), len(ids)
        fed = Step(mx.array(tokens), mx.zeros((n,), dtype=mx.bool_), mx.zeros((n,)))
        return [self.slots[i] for i in ids], [self.plan] * n, fed

    def keep(self, found: Explored) -> int:
        """The kept row's slot (the fork's when the kept branch never had one), holding the
        fork's cache and the branch's tokens but its last; every other slot is freed."""
        slot = self.slots.pop(found.kept, self.slot)
        self.shared.free([s for s in [self.slot, *self.slots.values()] if s != slot], self.dirty)
        self.shared.lengths[slot] = self.base + len(found.rows) - 1
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
    # EOS at its first token: that token's values and margin (scored, never text or a row)
    eos: tuple[list[float], float] | None = None
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
        return "".join(self.cue_texts).strip().split("\n")[0].strip()

    def add(self, values: list[float], margin: float) -> None:
        if int(values[TOKEN]) in self.tok.eos_token_ids:
            self.active, self.end = False, "stop"
            self.eos = None if self.rows else (values, margin)
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
