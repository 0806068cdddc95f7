"""Branch exploration at a fork (mode "fork"): CoT-decoding (Wang and Zhou 2024) at entropix's
forks, decoded as one batch.

Greedy decoding, but at a fork (the first generated token, an 'exploring' token, or both:
``SamplerConfig.fork_trigger``) the top ``fork_branches`` candidate tokens each start a branch.
The branches are decoded together, greedily, as rows of one batch that start from copies of
the prompt's KV cache, until each ends: end of sequence, a stop string, the end of a line that
has some text (the answer boundary of a short answer), or ``fork_branch_tokens``. Each branch
gets a confidence (``fork_score``) and the best is kept; generation goes on from its row.

Scores, computed on the branch's greedy continuation (its tokens after the first: the first
token's distribution is the fork's, the same for every branch; a one-token branch is scored on
its first token, with margin p(token) - p(best other)):
- ``answer_margin``: CoT-decoding's answer confidence, the mean of p(top1) - p(top2) over the
  tokens that cover the last number of the branch text, else over the whole branch;
- ``margin``: the same mean over the whole branch;
- ``entropy``: minus the mean entropy (bits) of the branch's distributions;
- ``logprob``: the mean log-probability of the branch's tokens.
``fork_aggregate`` sums the scores of branches whose normalized answers agree and keeps the
best branch of the winning answer (CoT-decoding's aggregation; meant for margins, which are
never negative).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx

from .config import ForkScore, ForkTrigger, SamplerConfig
from .events import ForkBranch, ForkEvent, Metrics, TopLogprob
from .sampler import EXPLORING
from .stream import LOGPROB, METRICS, TOKEN, StopMatcher, top_of

NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def fork_due(
    cfg: SamplerConfig, index: int, state: int, entropy: float = 0.0
) -> ForkTrigger | None:
    """What opens a fork at the token at ``index`` (of state ``state``, logits entropy
    ``entropy`` bits), if anything does."""
    if index == 0 and cfg.fork_trigger in ("first", "both"):
        return "first"
    below = cfg.fork_max_entropy is None or entropy < cfg.fork_max_entropy
    if state == EXPLORING and below and cfg.fork_trigger in ("exploring", "both"):
        return "exploring"
    return None


def answer_span(texts: Sequence[str]) -> tuple[int, int]:
    """Token range [lo, hi) covering the last number of the joined texts, else all tokens."""
    joined = "".join(texts)
    numbers = list(NUMBER.finditer(joined))
    if not numbers:
        return 0, len(texts)
    start, end = numbers[-1].span()
    lo = hi = None
    pos = 0
    for i, t in enumerate(texts):
        if pos < end and pos + len(t) > start:
            lo = i if lo is None else lo
            hi = i + 1
        pos += len(t)
    return (lo, hi) if lo is not None and hi is not None else (0, len(texts))


def normalize_answer(text: str) -> str | None:
    """The branch's answer: its last number (commas and a trailing .0 dropped), else its text
    lowercased with spaces collapsed and outer punctuation stripped; None when empty."""
    numbers = NUMBER.findall(text)
    if numbers:
        n = numbers[-1].replace(",", "")
        return n[:-2] if n.endswith(".0") else n
    words = " ".join(text.lower().split()).strip(" .,:;!?\"'*()[]")
    return words or None


def branch_score(
    rule: ForkScore,
    texts: Sequence[str],
    entropies: Sequence[float],
    logprobs: Sequence[float],
    margins: Sequence[float],
) -> float:
    """The confidence of one branch from its per-token values (first token included)."""
    lo, hi = answer_span(texts) if rule == "answer_margin" else (0, len(texts))
    span = [i for i in range(lo, hi) if i > 0] or [lo]
    values = {
        "answer_margin": margins,
        "margin": margins,
        "entropy": [-e for e in entropies],
        "logprob": logprobs,
    }[rule]
    return sum(values[i] for i in span) / len(span)


def select_branch(scores: Sequence[float], answers: Sequence[str | None], aggregate: bool) -> int:
    """Index of the kept branch: the highest score (the first on ties), or with ``aggregate``
    the best branch of the answer whose branches' scores sum highest."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    if not aggregate:
        return best
    totals: dict[Any, float] = {}
    for i, (s, a) in enumerate(zip(scores, answers, strict=True)):
        key = a if a is not None else ("branch", i)  # no answer: a group of its own
        totals[key] = totals.get(key, 0.0) + s
    winner = max(totals, key=lambda k: totals[k])
    group = [i for i, a in enumerate(answers) if (a if a is not None else ("branch", i)) == winner]
    return max(group, key=lambda i: (scores[i], -i))


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


@dataclass
class _Branch:
    tok: Any
    stops: StopMatcher
    limit: int
    rows: list[list[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    margins: list[float] = field(default_factory=list)
    active: bool = True
    eos: bool = False

    def __post_init__(self) -> None:
        self.detok = self.tok.detokenizer()

    def add(self, values: list[float], margin: float) -> None:
        if int(values[TOKEN]) in self.tok.eos_token_ids:
            self.active, self.eos = False, True
            return
        before = "".join(self.texts)
        piece = self.detok.add_token(int(values[TOKEN]))
        self.rows.append(values)
        self.texts.append(piece)
        self.margins.append(margin)
        text = before + piece
        if self.stops.find(text) >= 0 or ("\n" in piece and before.strip()):
            self.active = False
        if len(self.rows) >= self.limit:
            self.active = False


@dataclass
class Explored:
    event: ForkEvent  # index is set by the engine
    rows: list[list[float]]  # the kept branch's packed values, one per token
    kept: int
    offset: int  # the kept row's cache holds everything but its last token
    eos: bool  # the kept branch ended the generation


def _margin(values: list[float], n_top: int) -> float:
    """p(top1) - p(top2) of the distribution a greedy token was read from."""
    _, lps = top_of(values, n_top)
    return math.exp(lps[0]) - math.exp(lps[1])


def explore(
    tok: Any,
    branch_step: Callable[[mx.array, list], Any],
    cache: list,
    fork_values: list[float],
    trigger: ForkTrigger,
    cfg: SamplerConfig,
    n_top: int,
    remaining: int,
    stop: Sequence[str],
    should_stop: Callable[[], bool] | None = None,
) -> Explored:
    """Decode the branches of the fork whose step values are ``fork_values`` (the cache holds
    everything before the fork token) and pick one. ``branch_step(tokens (k,), cache)`` runs
    one greedy step of all rows (``step.sample_step``'s packed values)."""
    ids, lps = top_of(fork_values, n_top)
    k = min(cfg.fork_branches, n_top)
    limit = min(cfg.fork_branch_tokens, remaining)
    base = cache[0].offset
    probs = [math.exp(lp) for lp in lps]
    branches = [_Branch(tok, StopMatcher(stop), limit) for _ in range(k)]
    for j, branch in enumerate(branches):
        first = list(fork_values)
        first[TOKEN], first[LOGPROB] = float(ids[j]), lps[j]
        branch.add(first, probs[j] - max(p for i, p in enumerate(probs) if i != j))
    tile_cache(cache, k)
    tokens, steps, computed = mx.array(ids[:k]), 1, 0
    while steps < limit and any(b.active for b in branches):
        if should_stop is not None and should_stop():
            break  # cancelled: the engine stops right after the fork
        result = branch_step(tokens, cache)
        rows = result.packed.tolist()  # one host sync for all branches
        computed += k
        for branch, values in zip(branches, rows, strict=True):
            if branch.active:
                branch.add(values, _margin(values, n_top))
        tokens, steps = result.token, steps + 1

    scores, answers = [], []
    for b in branches:
        ent = [v[METRICS][0] for v in b.rows] or [0.0]
        lp = [v[LOGPROB] for v in b.rows] or [0.0]
        texts = b.texts or [""]
        scores.append(branch_score(cfg.fork_score, texts, ent, lp, b.margins or [0.0]))
        answers.append(normalize_answer("".join(b.texts)))
    kept = select_branch(scores, answers, cfg.fork_aggregate)
    event = ForkEvent(
        mode="fork",
        index=0,
        trigger=trigger,
        metrics=Metrics.from_values(fork_values[METRICS]),
        score=cfg.fork_score,
        branches=[
            ForkBranch(
                token=TopLogprob(id=ids[j], text=tok.id_to_text(ids[j]), logprob=lps[j]),
                text="".join(b.texts),
                tokens=len(b.rows) + b.eos,
                score=round(scores[j], 6),
                answer=answers[j],
                kept=j == kept,
            )
            for j, b in enumerate(branches)
        ],
        kept=kept,
        tokens_computed=computed,
    )
    chosen = branches[kept]
    return Explored(event, chosen.rows, kept, base + len(chosen.rows) - 1, chosen.eos)
