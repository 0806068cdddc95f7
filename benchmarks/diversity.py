"""Diversity of a sampler's outputs across seeds, and a guard against gibberish. Pure functions.

Diversity of one prompt's outputs (one per seed) counts the word n-grams they do not share:

    distinct_across(texts, n) = (|union of the texts' n-gram sets| - max_i |set_i|)
                                / (sum_i |set_i| - max_i |set_i|)

0 when every output has the same n-grams (identical outputs), 1 when no n-gram is shared
(disjoint outputs); in between, the share of the n-grams beyond the largest output's that are
new. Sets, not counts: repeating a phrase inside one output adds nothing. ``diversity`` is its
mean over n = 1, 2, 3 (words, lowercased, punctuation split off; an n no two outputs reach is
left out of the mean).

Raising the temperature always raises that number, gibberish included, so two guards are
reported beside it: ``mean_logprob`` (mean log p of the chosen tokens under the model's raw
distribution: sampled tail tokens pull it down) and ``repetition_rate`` (share of an output's
word 3-grams that repeat an earlier one: degenerate loops).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

DIVERSITY_NS = (1, 2, 3)
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """Lowercased words and punctuation marks, in order."""
    return _WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    if n < 1:
        raise ValueError(f"n must be at least 1 (got {n})")
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_across(texts: Sequence[str], n: int) -> float:
    """0 (all outputs share every n-gram) .. 1 (no n-gram shared); see the module docstring.
    Fewer than two non-empty outputs: 0 (nothing to differ)."""
    sets = [set(ngrams(words(t), n)) for t in texts]
    sizes = [len(s) for s in sets]
    spare = sum(sizes) - max(sizes, default=0)
    return (len(set().union(*sets)) - max(sizes)) / spare if spare else 0.0


def diversity(texts: Sequence[str], ns: Sequence[int] = DIVERSITY_NS) -> float:
    """Mean of ``distinct_across`` over those ``ns`` at which two or more outputs have an
    n-gram (two-word answers have no 3-grams: they count on n = 1, 2 only); 0 if none has."""
    usable = [n for n in ns if sum(bool(ngrams(words(t), n)) for t in texts) >= 2]
    return sum(distinct_across(texts, n) for n in usable) / len(usable) if usable else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of the text's word n-grams that already occurred in it (0: no loop)."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def mean_logprob(logprobs: Sequence[Sequence[float]]) -> float:
    """Mean log p per token over several outputs' token log-probs (natural log)."""
    flat = [x for lp in logprobs for x in lp]
    return sum(flat) / len(flat) if flat else 0.0
