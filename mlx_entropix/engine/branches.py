"""The rows of a fork's batch: one branch's tokens as they are decoded, and the KV-cache moves
that put branches into rows of one batch and take ended ones out (``fork.py``,
``fork_answer.py``)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from .stream import TOKEN, StopMatcher, top_of


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


def keep_rows(cache: list, rows: list[int]) -> None:
    """Keep only these rows of a batched cache (branches that ended leave the batch)."""
    idx = mx.array(rows)
    for c in cache:
        c.keys, c.values = c.keys[idx], c.values[idx]


def prompt_copy(cache: list, base: int, n: int) -> list:
    """A new ``n``-row cache holding only the first ``base`` positions (the prompt, the same in
    every row) of ``cache``, which is left as it is."""
    out = []
    for c in cache:
        d = copy.copy(c)
        d.keys, d.values, d.offset = c.keys[:1], c.values[:1], base
        out.append(d)
    tile_cache(out, n)
    return out


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
