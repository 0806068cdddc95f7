"""Self-consistency beside the answer: k hidden rows sampled in normal mode beside the user's
rows (one shared batch, one prefill), each row's answer read with the confidence's span reader,
and the share of them that gave the user row's answer (Wang et al. 2023's vote). It is
reported; a confidence map may take it as a feature, but none ships (``DEFAULT_SAMPLES``).

The hidden rows' events never reach the caller, each user row's done event waits for them
(``with_agreement``), and they are cut short once their answers are complete (``done_early``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..answers import normalize
from ..config import Mode
from .confidence import _SENTENCE_END, ConfidenceModel, answer_span, score

HIDDEN_MODE: Mode = "normal"
MAX_SAMPLES = 16
# Off unless asked, per format (README "Answer confidence"): on dev, leave one category out,
# 4 rows add nothing to today's raw map and +0.011 [-0.002, +0.023] AUROC to the chat map,
# at about 2x the time to the done event.
DEFAULT_SAMPLES: dict[str, int] = {"raw": 0, "chat": 0}


def samples_for(requested: int | None, fmt: str, modes: Sequence[str]) -> int:
    """The hidden rows a request runs: ``requested`` (None: the format's default); none beside
    fork mode (its branches are the batch)."""
    if "fork" in modes:
        return 0
    k = DEFAULT_SAMPLES.get(fmt, 0) if requested is None else int(requested)
    if not 0 <= k <= MAX_SAMPLES:
        raise ValueError(f"confidence_samples must lie in [0, {MAX_SAMPLES}]")
    return k


def row_seeds(seed: int, k: int) -> list[int]:
    """The k sampling seeds of one answer's rows (row 0 uses ``seed`` itself), far apart: the
    hidden rows' here, self-consistency's rows (``eval.consistency``)."""
    return [(seed + i * 15_485_863) % (2**31) for i in range(k)]


def hidden_seeds(seed: int, k: int) -> list[int]:
    """The k hidden rows' seeds, none equal to ``seed`` (a user row in normal mode with the same
    seed would be copied, not sampled): ``row_seeds``'s rows 1..k."""
    return row_seeds(seed, k + 1)[1:]


def answer_of(text: str) -> str:
    """A row's answer as agreement compares it: what the span reader takes without an answer
    kind (a request's: up to the first line break or sentence end, an equation's right-hand
    side), normalized (``answers.normalize``); "" for no answer."""
    span = answer_span(text)
    return "" if span is None else normalize(text[span[0] : span[1]])


def agreement(text: str, rows: Sequence[str]) -> float | None:
    """The share of ``rows`` (texts) whose answer is ``text``'s (no answer agrees with
    nothing); None without rows."""
    if not rows:
        return None
    mine = answer_of(text)
    return sum(mine != "" and answer_of(r) == mine for r in rows) / len(rows)


def answer_complete(text: str) -> bool:
    """Whether more text cannot change ``answer_of(text)``: a line break or a sentence end
    (not at the very end: "3." may go on to "3.5") after the answer's first character."""
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return False
    if "\n" in text[start:]:
        return True
    return any(m.end() < len(text) for m in _SENTENCE_END.finditer(text, start))


def done_early(streams: Sequence[Any], n_user: int) -> Callable[[], bool]:
    """``should_stop`` for the hidden rows: true once every user row is done and every hidden
    row is done or has its answer."""
    return lambda: (
        all(s.finished for s in streams[:n_user])
        and all(s.finished or answer_complete(s.text) for s in streams[n_user:])
    )


def with_agreement(
    items: Iterator[tuple[int, Any] | None],
    streams: Sequence[Any],
    n_user: int,
    model: ConfidenceModel | None,
    fmt: str,
) -> Iterator[tuple[int, Any] | None]:
    """The user rows' items of ``items`` (a request's ``(row, event)`` or None): the hidden
    rows' (rows ``n_user`` on) dropped, each user row's done event held until the end, then
    given ``agreement`` and ``confidence_samples`` and scored again with it (the map that takes
    it where one ships: ``ConfidenceModel.map_for``; ``streams``: the request's
    ``RowStream``s, text and signals of every row)."""
    held: dict[int, Any] = {}
    for item in items:
        if item is not None and item[0] < n_user and item[1].type == "done":
            held[item[0]] = item[1]
        elif item is None or item[0] < n_user:
            yield item
    rows = [s.text for s in streams[n_user:]]
    for r in sorted(held):
        s, done = streams[r], held[r]
        a = agreement(s.text, rows)
        scored = score(s.text, s.signals, model, fmt, agreement=a, prompt=s.prompt)
        span = None if scored.span is None else list(scored.span)
        update = {"confidence": scored.confidence, "answer_span": span, "agreement": a,
                  "confidence_samples": len(rows)}  # fmt: skip
        yield r, done.model_copy(update=update)
