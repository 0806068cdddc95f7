"""Branch exploration at a fork (mode "fork"): CoT-decoding (Wang and Zhou 2024), decoded as
one batch.

Greedy decoding, but at a fork (the first generated token by default; an entropix 'exploring'
token, or both: ``SamplerConfig.fork_trigger``) the top ``fork_branches`` candidate tokens each
start a branch. The branches are decoded together, greedily, as rows of one batch that start
from copies of the prompt's KV cache, each to its end: end of sequence, a stop string, or
``fork_branch_tokens`` (the branch budget, large enough to reason; a line break is no end). A
branch that ends leaves the batch, so the work is what the branches decode
(``ForkEvent.tokens_computed``). Each branch's answer is read with the grader's reader
(``answers.read_answer`` for ``fork_answer_kind``), it gets a confidence (``fork_score``) and
one branch is kept; generation goes on from its row.

Scores (``SamplerConfig.fork_score``, ``branch_score``): every token of a branch has the values
of the distribution it was read from; the first token's is the fork's (the same for every
branch), so all branches are on one scale. ``answer_margin``'s span is where the reader found
the answer (the whole branch when the kind has no narrower place: free text, or no kind).
Branches without an answer rank last. ``fork_aggregate`` sums the scores of branches with the
same answer (CoT-decoding's aggregation; the margins are never negative): ``select_branch``.

No reader (no ``fork_answer_kind``): the whole text is the answer, or what the model says after
``fork_answer_cue`` (``Branch.take``; the cue is not part of the branch's text), whose tokens
``answer_margin`` then scores.

Forks at the answer (``fork_at_answer``, ``fork_answer.py``): the branches' most uncertain
tokens inside or just before their answer spans open more branches, which join the groups.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

from ..answers import Kind, normalize, read_answer
from ..config import ForkScore, ForkTrigger, SamplerConfig
from ..events import AnswerGroup, ForkBranch, ForkEvent, Metrics, TokenEvent, TopLogprob
from ..uncertainty.sampler import EXPLORING
from .branches import Branch, margin_of
from .fork_answer import decode_forced, plan_answer_forks
from .stream import LOGPROB, METRICS, TOKEN, RowStream, StopMatcher, finite, top_of


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


def fork_rows(cfg: SamplerConfig) -> int:
    """The most rows of a shared batch one fork request decodes at once: its first-token
    branches, or the answer forks' new branches (``fork_answer.plan_answer_forks``: each
    parent's sites, ``fork_answer_branches`` candidates each), whichever is more."""
    if not (cfg.fork_at_answer and cfg.fork_answer_kind is not None):
        return cfg.fork_branches
    parents = 1 if cfg.fork_answer_from == "kept" else cfg.fork_branches
    sites = 2 if cfg.fork_answer_sites == "each" else 1
    return max(cfg.fork_branches, parents * sites * cfg.fork_answer_branches)


def read_branch(
    texts: Sequence[str], kind: Kind | None, options: dict[str, str] | None = None
) -> tuple[str | None, tuple[int, int]]:
    """The answer of a branch whose tokens read ``texts`` (the grader's ``extracted``; None:
    none) and the token range [lo, hi) of its answer span (all tokens where the reader gives
    no narrower place)."""
    text = "".join(texts)
    if kind is None:
        answer, chars = normalize(text)[:80], None
    else:
        answer, chars = read_answer(text, kind, options)
    if chars is None:
        return answer or None, (0, len(texts))
    start, end = chars
    ends = list(itertools.accumulate(map(len, texts)))  # each token's text ends there
    hit = [i for i, e in enumerate(ends) if e - len(texts[i]) < end and e > start]
    return answer or None, ((hit[0], hit[-1] + 1) if hit else (0, len(texts)))


def branch_score(
    rule: ForkScore,
    span: tuple[int, int],
    entropies: Sequence[float],
    logprobs: Sequence[float],
    margins: Sequence[float],
) -> float:
    """The confidence of one branch from its per-token values (first token included): the mean
    over the answer span ``[lo, hi)`` (``answer_margin``) or over every token (the others)."""
    lo, hi = span if rule == "answer_margin" else (0, len(margins))
    values = {"entropy": [-e for e in entropies], "logprob": logprobs}.get(rule, margins)[lo:hi]
    return sum(values) / len(values) if values else 0.0


def answer_groups(
    scores: Sequence[float], answers: Sequence[str | None]
) -> list[tuple[str, float, list[int]]]:
    """Branches by answer: (answer, summed score, branch indices best first), the highest sum
    first (ties: the group whose best branch comes first). Branches without an answer are in
    no group."""
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        if a is not None:
            groups.setdefault(a, []).append(i)
    out = [
        (a, sum(scores[i] for i in members), sorted(members, key=lambda i: (-scores[i], i)))
        for a, members in groups.items()
    ]
    return sorted(out, key=lambda g: (-g[1], g[2][0]))


def select_branch(scores: Sequence[float], answers: Sequence[str | None], aggregate: bool) -> int:
    """Index of the kept branch: the highest score among branches with an answer (the first on
    ties; all branches when none has one), or with ``aggregate`` the best branch of the answer
    whose branches' scores sum highest."""
    answered = [i for i, a in enumerate(answers) if a is not None] or range(len(scores))
    if aggregate and any(a is not None for a in answers):
        return answer_groups(scores, answers)[0][2][0]
    return max(answered, key=lambda i: (scores[i], -i))


# One step of branch rows: their ids, fed tokens, and the rows not in it whose keys must be
# held until the choice (ended at the budget, so keepable, while others read the cue).
Ask = tuple[list[int], list[int], frozenset[int]]


@dataclass
class Explored:
    event: ForkEvent  # index is set by the engine
    rows: list[list[float]]  # the kept branch's packed values, one per token
    kept: int
    ended: bool  # the kept branch ended the generation (EOS or a stop string)


def explore(
    tok: Any,
    fork_values: list[float],
    trigger: ForkTrigger,
    cfg: SamplerConfig,
    n_top: int,
    remaining: int,
    stop: Sequence[str],
    should_stop: Callable[[], bool],
    options: dict[str, str] | None = None,
) -> Generator[Ask, list[list[float]], Explored]:
    """Decode the branches of the fork whose step values are ``fork_values`` and pick one.

    A coroutine (driven by ``branches.SlotRows``): it yields ``Ask``s and is sent each row's
    packed values (greedy). A row id not seen before is a new row: a copy of the fork's cache
    (everything before the fork token). The rows of a step are those of the step before it
    that go on (a subsequence: ended branches leave the batch), or all new ones (the answer
    forks' batch; the rows before it stay where they are). Returns the choice; the kept
    branch's row is id ``kept`` if it still exists. ``options``: the multiple-choice options
    of the prompt, for the ``choice`` reader."""
    ids, lps = top_of(fork_values, n_top)
    k = min(cfg.fork_branches, n_top)
    limit = min(cfg.fork_branch_tokens, remaining)
    fork_margin = margin_of(fork_values, n_top)  # every branch's first token: one scale
    # the answer cue's tokens when the branches have no reader (no answer kind)
    said = cfg.fork_answer_cue if cfg.fork_answer_kind is None else None
    cue = (list(tok.encode(" " + said.strip())) or None) if said else None
    branches = [Branch(tok, StopMatcher(stop), limit, cue=cue, cue_limit=cfg.fork_cue_tokens)
                for _ in range(k)]  # fmt: skip
    feed: list[int | None] = []
    for j, branch in enumerate(branches):
        first = list(fork_values)
        first[TOKEN], first[LOGPROB] = float(ids[j]), lps[j]
        feed.append(branch.take(first, fork_margin))
    live = [j for j in range(k) if feed[j] is not None]  # branch of each row of the batch
    computed = 0
    while live and not should_stop():  # cancelled: the engine stops right after the fork
        held = frozenset(j for j in range(k) if feed[j] is None and branches[j].end == "length")
        rows = yield live, [feed[j] for j in live], held  # type: ignore[misc]
        computed += len(live)
        for j, values in zip(live, rows, strict=True):
            feed[j] = branches[j].take(values, margin_of(values, n_top))
        live = [j for j in live if feed[j] is not None]

    scores, answers, spans = _read_all(branches, cfg, options)
    answerable = cfg.fork_at_answer and cfg.fork_answer_kind is not None  # a span to fork at
    if answerable and not should_stop():
        first = select_branch(scores, answers, cfg.fork_aggregate)
        parents = [first] if cfg.fork_answer_from == "kept" else list(range(k))
        new = plan_answer_forks(tok, branches, spans, answers, parents, cfg, n_top, stop, limit)
        computed += yield from decode_forced(new, k, n_top, should_stop)
        branches = [*branches, *new]
        scores, answers, spans = _read_all(branches, cfg, options)  # pure: the first read again
    kept = select_branch(scores, answers, cfg.fork_aggregate)
    event = ForkEvent(
        mode="fork",
        index=0,
        trigger=trigger,
        metrics=Metrics.from_values(fork_values[METRICS]),
        score=cfg.fork_score,
        branches=[
            ForkBranch(
                token=_token(tok, b, (ids[j], lps[j]) if j < k else None),
                text="".join(b.visible()),
                tokens=len(b.rows) + (b.end == "stop"),
                score=round(scores[j], 6),
                answer=answers[j],
                kept=j == kept,
                finish=b.end,
                span=list(spans[j]),
                margins=[round(m, 4) for m in b.margins[: len(b.visible())]],
                parent=b.parent,
                at=b.at,
                signal=None if b.signal is None else round(b.signal, 4),
                cue=None if b.queue is None else b.cue_answer(),
            )
            for j, b in enumerate(branches)
        ],
        kept=kept,
        tokens_computed=computed,
        answer_kind=cfg.fork_answer_kind,
        aggregate=cfg.fork_aggregate,
        groups=[
            AnswerGroup(
                answer=a,
                score=round(total, 6),
                branches=len(members),
                best=members[0],
                won=kept in members,
            )
            for a, total, members in answer_groups(scores, answers)
        ],  # fmt: skip
    )
    chosen = branches[kept]
    return Explored(event, chosen.rows, kept, chosen.end != "length")


def kept_events(
    stream: RowStream, found: Explored, last: bool = False
) -> list[TokenEvent | ForkEvent]:
    """The fork's event (at the stream's next token) and its kept branch's token events; the
    stream finishes ("stop") if the kept branch ended the generation. ``last``: the branch's
    last token is the generation's (``RowStream.push``)."""
    out: list[TokenEvent | ForkEvent] = []
    out += stream.add_fork(found.event.model_copy(update={"index": stream.n}))
    for i, values in enumerate(found.rows, 1):
        out += stream.push(values, last and i == len(found.rows))
        if stream.finished:
            break
    if found.ended and not stream.finished:
        stream.finish, stream.finished = "stop", True
    return out


def _token(tok: Any, b: Branch, first: tuple[int, float] | None) -> TopLogprob:
    """A branch's own token: its first (``first``: id, log-prob), or for an answer fork's
    branch the one it took at the fork (the token its parent did not)."""
    i, lp = (
        first if first is not None else (int(b.rows[b.at or 0][TOKEN]), b.rows[b.at or 0][LOGPROB])
    )
    return TopLogprob(id=i, text=tok.id_to_text(i), logprob=lp)


def _read_all(
    branches: Sequence[Branch], cfg: SamplerConfig, options: dict[str, str] | None
) -> tuple[list[float], list[str | None], list[tuple[int, int]]]:
    """Every branch's score, answer and answer span (``read_branch``, ``branch_score``)."""
    scores, answers, spans = [], [], []
    for b in branches:
        texts = b.visible()
        answer, span = read_branch(texts, cfg.fork_answer_kind, options)
        n = len(texts) or 1
        # A branch that is EOS at once is scored by that token (its log-prob, the fork's
        # entropy and margin), not as 0.0: the best possible entropy or log-prob score.
        rows, margins = ([b.eos[0]], [b.eos[1]]) if b.eos else (b.rows, b.margins)
        ent = [v[METRICS][0] for v in rows][:n] or [0.0]
        lp = [v[LOGPROB] for v in rows][:n] or [0.0]
        scores.append(branch_score(cfg.fork_score, span, ent, lp, margins[:n] or [0.0]))
        if b.queue is not None:  # the cue was read: the answer is what followed it
            answer = normalize(b.cue_answer())[:80] or None
            if cfg.fork_score == "answer_margin":  # CoT-decoding: the answer's own margins
                scores[-1] = sum(b.cue_margins) / len(b.cue_margins) if b.cue_margins else 0.0
        if not all(finite(v) for v in b.rows):  # NaN logits: kept only if all are (an error)
            scores[-1] = -math.inf
        answers.append(answer)
        spans.append(span)
    return scores, answers, spans
