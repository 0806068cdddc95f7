"""Forks at the answer (``SamplerConfig.fork_at_answer``): where entropix comes into
CoT-decoding. After the first-token branches are decoded and read, a branch whose answer span
holds an uncertain token (the highest varentropy, or entropy, inside the span or on the token
just before it) is forked again there: its next candidates each start a new branch that keeps
the branch's tokens before that point and is decoded greedily to its end. The new branches are
read and scored like the others and join the answer groups.

Never on a line break or EOS (``answer_fork_site``): a fork there changes the layout, not the
answer; nor at the first token (the first-token fork's).

The new branches decode as one batch from a copy of the prompt's cache, each re-reading its
parent's tokens up to the fork (teacher-forced rows: the parent's row may have left the batch
when it ended): their cost, tokens computed, counts every re-read token.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

from ..config import AnswerSites, SamplerConfig
from .branches import Branch, margin_of
from .stream import LOGPROB, METRICS, TOKEN, StopMatcher, top_of

Candidate = tuple[int, str]  # a candidate token's id and text
SIGNAL_INDEX = {"entropy": 0, "varentropy": 1}  # in the packed metrics (``Metrics`` order)


def answer_fork_site(
    window: range,
    signal: Sequence[float],
    own: Sequence[Candidate],
    candidates: Sequence[Sequence[Candidate]],
    eos: set[int],
    min_value: float,
    n_alt: int,
) -> tuple[int, list[int]] | None:
    """The site of an answer fork among the token indices ``window`` of a branch and the
    candidate ids that start its new branches.

    Token ``p`` of the branch was read from a distribution with uncertainty ``signal[p]`` and
    top candidates ``candidates[p]`` (most likely first, the branch's own token among them);
    it took ``own[p]`` (id, text). A token is a site unless it is the first, a line break, or
    has no candidate other than its own that is neither EOS nor holds a line break. The site
    is the one with the highest signal (the earlier on ties) if it reaches ``min_value``; it
    takes ``n_alt`` candidates at most. None: no site."""
    best: tuple[int, list[int]] | None = None
    for p in window:
        if p < 1 or p >= min(len(own), len(signal), len(candidates)):
            continue
        taken, text = own[p]
        if "\n" in text or signal[p] < min_value:
            continue
        alts = [i for i, t in candidates[p] if i not in eos and "\n" not in t and i != taken]
        if alts and (best is None or signal[p] > signal[best[0]]):
            best = (p, alts[:n_alt])
    return best


def answer_fork_sites(
    span: tuple[int, int], sites: AnswerSites, *args: Any
) -> list[tuple[int, list[int]]]:
    """The answer forks of a branch whose answer span is ``span`` (tokens [lo, hi)), in token
    order: ``max``, the one site of the span and the token before it; ``span``, the site
    inside the span; ``each``, both the site inside the span and the token before it
    (``args``: the rest of ``answer_fork_site``'s)."""
    lo, hi = span
    each = [range(lo - 1, lo), range(lo, hi)]
    windows = {"max": [range(lo - 1, hi)], "span": [range(lo, hi)]}.get(sites, each)
    found = [answer_fork_site(w, *args) for w in windows]
    return [f for f in found if f is not None]


def plan_answer_forks(
    tok: Any,
    branches: Sequence[Branch],
    spans: Sequence[tuple[int, int]],
    answers: Sequence[str | None],
    parents: Sequence[int],
    cfg: SamplerConfig,
    n_top: int,
    stop: Sequence[str],
    limit: int,
) -> list[Branch]:
    """The new branches of the answer forks of ``parents`` (branches with an answer only),
    each filled with its parent's tokens before the site and its own first token there."""
    index = SIGNAL_INDEX[cfg.fork_answer_signal]
    eos = set(tok.eos_token_ids)
    new: list[Branch] = []
    for j in parents:
        parent = branches[j]
        n = len(parent.visible())
        if answers[j] is None or n < 2:
            continue
        tops = [top_of(v, n_top) for v in parent.rows[:n]]
        candidates = [[(i, tok.id_to_text(i)) for i in ids] for ids, _ in tops]
        signal = [v[METRICS][index] for v in parent.rows[:n]]
        own = [(int(v[TOKEN]), t) for v, t in zip(parent.rows, parent.texts[:n], strict=False)]
        sites = answer_fork_sites(spans[j], cfg.fork_answer_sites, signal, own, candidates, eos,
                                  cfg.fork_answer_min, cfg.fork_answer_branches)  # fmt: skip
        for p, alts in sites:
            if p + 1 >= limit:  # no room to go on: the new branch would end at its own token
                continue
            ids, lps = tops[p]
            for alt in alts:
                b = Branch(tok, StopMatcher(stop), limit, parent=j, at=p, signal=signal[p])
                for values, m in zip(parent.rows[:p], parent.margins[:p], strict=True):
                    b.add(values, m)
                first = list(parent.rows[p])
                first[TOKEN], first[LOGPROB] = float(alt), lps[ids.index(alt)]
                b.add(first, parent.margins[p])  # the same distribution: the same margin
                new.append(b)
    return new


def decode_forced(
    new: Sequence[Branch],
    first_id: int,
    n_top: int,
    should_stop: Callable[[], bool],
) -> Generator[tuple[list[int], list[int], frozenset[int]], list[list[float]], int]:
    """Decode the new branches as one batch of new rows (ids ``first_id`` on, copies of the
    fork's cache; ``fork.explore``'s protocol): each row re-reads its filled tokens, then goes
    on greedily to its end. Returns the tokens computed (a row holds all of its branch but the
    last token when the branch ended at the budget)."""
    live = [r for r, b in enumerate(new) if b.active]
    pos = computed = 0  # step ``pos`` feeds each row's token ``pos``
    while live and not should_stop():
        tokens = [int(new[r].rows[pos][TOKEN]) for r in live]
        values = yield [first_id + r for r in live], tokens, frozenset()  # all end together
        computed, pos = computed + len(live), pos + 1
        for r, vals in zip(live, values, strict=True):
            if pos >= len(new[r].rows):  # past the parent's tokens: the row's own
                new[r].add(vals, margin_of(vals, n_top))
        live = [r for r in live if new[r].active]
    return computed
