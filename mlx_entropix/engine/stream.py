"""One generated row's text and events: from the packed values of each step to ``TokenEvent``s
and the closing ``DoneEvent``.

The engine decodes one or several rows at once (compare mode, fork branches); each row keeps
its own detokenizer, stop-string matcher, counters and timings here, so the loop in
``batch.py`` only moves arrays. Packed layout of a row (float32, one host read per step):
token, state, action, temperature, top_p, top_k, min_p, n_samples, logprob, the six metrics,
then ``n_top`` candidate ids and their log-probabilities (descending).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..config import Mode
from ..errors import GenerationError
from ..events import (
    ACTIONS,
    STATES,
    DoneEvent,
    FinishReason,
    ForkEvent,
    Metrics,
    SamplingParams,
    TokenEvent,
    TopLogprob,
)
from .confidence import ConfidenceModel, TokenSignal, score

TOKEN, STATE, ACTION, PARAMS, LOGPROB, METRICS, TOP = 0, 1, 2, slice(3, 8), 8, slice(9, 15), 15


def params_of(values: list[float]) -> SamplingParams:
    """The event's ``SamplingParams`` from the packed (temperature, top_p, top_k, min_p, n)."""
    temp, top_p, top_k, min_p, n = values
    return SamplingParams(
        temperature=round(temp, 6),
        top_p=round(top_p, 6),
        top_k=int(top_k),
        min_p=round(min_p, 6),
        n_samples=int(n),
    )


def finite(values: list[float]) -> bool:
    """Whether a row's logits were finite: a NaN or an infinity makes the entropy or the
    varentropy NaN (and its keys and values of that step, which a slot keeps, NaN too)."""
    return all(math.isfinite(v) for v in values[METRICS][:2])


def check_finite(values: list[float], index: int) -> None:
    """``GenerationError`` naming the token where a row's logits were not finite (its draw is
    then meaningless), for its request alone."""
    if not finite(values):
        raise GenerationError(f"non-finite logits (the model produced NaN/inf at token {index})")


def top_of(values: list[float], n_top: int) -> tuple[list[int], list[float]]:
    """Candidate ids and log-probabilities of a packed row."""
    return [int(i) for i in values[TOP : TOP + n_top]], values[TOP + n_top : TOP + 2 * n_top]


class StopMatcher:
    """Holds back text that may be the start of a stop string; finds the first full match."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]

    def find(self, text: str, new: int = 0) -> int:
        """Index where the first stop string starts, or -1. ``text[:new]`` was searched
        before, so only a match that ends after it is new: scan the tail only."""
        start = max(0, new - max((len(s) for s in self.stops), default=1) + 1)
        return min([i for i in (text.find(s, start) for s in self.stops) if i >= 0], default=-1)

    def safe_end(self, text: str) -> int:
        """How much of ``text`` can be released: none of its tail may start a stop string."""
        held = [n for s in self.stops for n in range(1, len(s)) if text.endswith(s[:n])]
        return len(text) - max(held, default=0)


class RowStream:
    """Turns one row's packed step values into events.

    With stop strings, events come one token late so held-back text joins the last event:
    token texts always concatenate to ``DoneEvent.text``. A fork event queued while a token
    event is held comes right after it, so events stay in text order.
    """

    def __init__(
        self,
        tok: Any,
        mode: Mode,
        stop: Sequence[str],
        top_logprobs: int,
        n_top: int,
        t0: float,
        confidence: ConfidenceModel | None = None,
        fmt: str = "chat",
        prompt: str | None = None,
    ):
        self.tok, self.mode, self.top_logprobs, self.n_top = tok, mode, top_logprobs, n_top
        # the answer confidence's map, the prompt's format and its question (``confidence.score``)
        self.confidence, self.fmt, self.prompt = confidence, fmt, prompt
        self.signals: list[TokenSignal] = []
        self.detok = tok.detokenizer()
        self.stops = StopMatcher(stop)
        self.states: Counter[str] = Counter()
        self.actions: Counter[str] = Counter()
        self.text, self.emitted, self.n = "", 0, 0  # decoded text, how much events carried
        self.finish: FinishReason = "length"
        self.finished = False
        self.held: TokenEvent | None = None
        self.queued: list[ForkEvent] = []
        self.t0 = self.t_first = t0

    def push(self, values: list[float], last: bool = False) -> list[TokenEvent | ForkEvent]:
        """The events ready after this step's values (none, or one, plus queued forks).
        ``last``: the row's last token (its budget is spent): the detokenizer's held-back text
        (a character cut in the middle, with a space before it) joins its event, as mlx-lm's
        last response carries it. ``GenerationError`` where the model's logits were not finite."""
        check_finite(values, self.n)
        token, state, action = (int(v) for v in values[:3])
        if token in self.tok.eos_token_ids:
            self.finish, self.finished = "stop", True
            return []
        searched = len(self.text)
        self.text += self.detok.add_token(token) + (self.detok.finalize() if last else "")
        cut = self.stops.find(self.text, searched) if self.stops.stops else -1
        if cut >= 0:
            self.text, self.finish, self.finished = self.text[:cut], "stop_string", True
        release = len(self.text) if cut >= 0 else self.stops.safe_end(self.text)
        piece = self.text[self.emitted : release]
        self.emitted = max(self.emitted, release)
        now = time.perf_counter()
        if self.n == 0:
            self.t_first = now
        self.states[STATES[state]] += 1
        self.actions[ACTIONS[action]] += 1
        top_ids, top_lps = top_of(values, self.n_top)
        k = self.top_logprobs
        metrics = Metrics.from_values(values[METRICS])
        self.signals.append(
            TokenSignal(
                end=len(self.text),
                logprob=values[LOGPROB],
                top2=(top_lps[0], top_lps[1]) if len(top_lps) >= 2 else None,
                metrics=tuple(metrics.model_dump().values()),
            )
        )
        event = TokenEvent(
            mode=self.mode,
            index=self.n,
            id=token,
            text=piece,
            state=STATES[state],
            action=ACTIONS[action],
            metrics=metrics,
            params=params_of(values[PARAMS]),
            logprob=values[LOGPROB],
            top=[
                TopLogprob(id=i, text=self.tok.id_to_text(i), logprob=lp)
                for i, lp in zip(top_ids[:k], top_lps[:k], strict=True)
            ],
            elapsed_s=now - self.t0,
        )
        self.n += 1
        if not self.stops.stops:
            return [event, *self._drain()]
        out = [] if self.held is None else [self.held, *self._drain()]
        self.held = event
        return out

    def add_fork(self, event: ForkEvent) -> list[ForkEvent]:
        """Queue a fork event behind a held token event, or release it now."""
        self.queued.append(event)
        return self._drain() if self.held is None else []

    def _drain(self) -> list[ForkEvent]:
        out, self.queued = self.queued, []
        return out

    def close(self) -> list[TokenEvent | ForkEvent]:
        """The held event (with the rest of the text) and anything queued behind it. The held
        event is still ours: the detokenizer's held-back text joins it (after EOS too; not
        after a stop string, where the text ends). Without a held event (no stop strings), a
        row that ends otherwise than by its budget (EOS, a cancel) loses that tail: at most an
        incomplete character, whose token event is out already."""
        held, self.held = self.held, None
        if held is not None:
            if self.finish != "stop_string":
                self.text += self.detok.finalize()
            held.text += self.text[self.emitted :]
            self.emitted = len(self.text)
        self.text = self.text[: self.emitted]
        return self._drain() if held is None else [held, *self._drain()]

    def done(
        self,
        prompt_tokens: int,
        t_prefill: float,
        seed: int,
        t_decode: float | None = None,
        **extra: Any,
    ) -> DoneEvent:
        """``t_decode``: when decoding started, if not at the first token event (a fork emits
        its kept branch in one burst after decoding all branches)."""
        t_end = time.perf_counter()
        n = self.n
        prefilled = prompt_tokens - extra.get("cached_tokens", 0)  # the prefix cache's: not
        t_first = self.t_first if t_decode is None else t_decode
        scored = score(self.text, self.signals, self.confidence, self.fmt, prompt=self.prompt)
        return DoneEvent(
            mode=self.mode,
            text=self.text,
            finish_reason=self.finish,
            prompt_tokens=prompt_tokens,
            generated_tokens=n,
            ttft_s=(self.t_first - self.t0) if n else 0.0,
            total_s=t_end - self.t0,
            # 0: the prefill never ended (cancelled during it; t_prefill is still t0)
            prefill_tok_s=prefilled / (t_prefill - self.t0) if t_prefill > self.t0 else 0.0,
            decode_tok_s=(n - 1) / (t_end - t_first) if n > 1 and t_end > t_first else 0.0,
            state_counts={s: self.states.get(s, 0) for s in STATES},
            action_counts=dict(self.actions),
            seed=seed,
            confidence=scored.confidence,
            answer_span=scored.span,
            **extra,
        )
