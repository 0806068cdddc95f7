"""Answer confidence: how likely a generation's answer is to be right, from its token signals.

Three steps, all pure:

1. **The answer span** (``answer_span``): with an answer kind, what the grader's reader
   (``answers.py``) reads: the number (after the last marker, else the last "=", else the
   first), the choice letter (or the one option text named), the first yes/no word. Otherwise
   (``exact``/``contains``, no kind as in a request, nothing read) the text from its first
   non-space character to its first **answer boundary** (a line break; a sentence end, not a
   decimal point); with no kind, an equation there ("3 + 1 = 4") gives its right-hand side.
   Text after the span (a continuation) does not count.
2. **Features** over the span's tokens (``span_features``: ``LOGIT_FEATURES``, the four
   attention metrics' means) and of the whole generation (``features``).
3. **The map to [0, 1]** (``ConfidenceModel``), per prompt format (chat or raw text): a
   logistic regression on standardized features or an isotonic map of one feature, chosen
   and fitted per model on dev by ``calibrate confidence`` (``eval/confidence_select.py``)
   and shipped in ``configs/confidence/<model>.json``; monotone in each feature. An answer
   that fails a check on its own text (``answer_checks``) is capped at the accuracy such
   answers had on dev. With hidden sampled rows, their agreement (``agreement.py``) and its map.
"""

from __future__ import annotations

import bisect
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..answers import Kind, number_in, read_choice, read_number, read_option, read_yesno
from ..config import CONFIG_DIR, shipped_file
from .answer_checks import copied, failed, wrong_arithmetic

CONFIDENCE_DIR = CONFIG_DIR / "confidence"
LOGIT_FEATURES: tuple[str, ...] = (
    "mean_logprob",
    "min_logprob",
    "first_logprob",
    "first_margin",
    "min_margin",
    "mean_entropy",
    "mean_varentropy",
    "log_tokens",
    "mean_margin",  # CoT-decoding's answer margin (Wang and Zhou 2024): mean p1 - p2
    "sum_logprob",  # log p(the answer's tokens): the answer string's probability
    # With the token that ends the answer ("85" then "\n" is surer than "85" then "0").
    "answer_mean_logprob",
    "answer_sum_logprob",
)
# Of the whole generation, not the span: how it got to the answer (candidates, see README).
# through_mean_logprob: the tokens up to the answer's end (the whole, less what follows).
CONTEXT_FEATURES = ("prefix_mean_logprob", "whole_mean_logprob", "through_mean_logprob",
                    "whole_mean_entropy", "span_start")  # fmt: skip
ATTENTION_FEATURES = ("attn_entropy", "attn_varentropy", "agreement", "interaction_strength")
# The share of k sampled rows that gave this answer (agreement.py); "<fmt>+agreement": its map
AGREEMENT_FEATURE, AGREEMENT_SUFFIX = "sc_agreement", "+agreement"
_SENTENCE_END = re.compile(r"(?<!\d)[.!?](?=\s|$)|(?<=\d)[.!?](?!\d)")


@dataclass(frozen=True)
class TokenSignal:
    """What the confidence needs of one generated token."""

    end: int  # character offset in the generated text where this token's text ends
    logprob: float  # log p(token), raw distribution
    top2: tuple[float, float] | None  # log-probs of the two most likely tokens (None: unknown)
    metrics: tuple[float | None, ...]  # the six metrics, ``events.METRIC_NAMES`` order


# --------------------------------------------------------------------------- the span


def boundary_span(text: str) -> tuple[int, int] | None:
    """From the first non-space character to the first line break or sentence end after it."""
    start = len(text) - len(text.lstrip())
    if start == len(text):
        return None
    newline = text.find("\n", start)
    end = newline if newline >= 0 else len(text)
    if m := _SENTENCE_END.search(text, start, end):
        end = m.start()
    end = len(text[:end].rstrip())
    return (start, end) if end > start else (start, start + 1)


def _place(found: tuple[Any, tuple[int, int] | None] | None) -> tuple[int, int] | None:
    return None if found is None else found[1]  # a reader's (value, span): the span


def answer_span(
    text: str, kind: Kind | None = None, options: dict[str, str] | None = None
) -> tuple[int, int] | None:
    """Character range [start, end) of the answer in ``text`` (see the module docstring);
    None for an empty text."""
    span = None
    if kind == "numeric":
        span = _place(read_number(text))
    elif kind == "choice":
        span = read_choice(text) or _place(read_option(text, options))
    elif kind == "yesno":
        span = _place(read_yesno(text))
    elif kind is None and (line := boundary_span(text)) and "=" in text[line[0] : line[1]]:
        span = _place(number_in(text[: line[1]], text.rindex("=", *line) + 1))
    return span or boundary_span(text)


def span_tokens(signals: Sequence[TokenSignal], span: tuple[int, int]) -> list[TokenSignal]:
    """The tokens whose text overlaps ``span`` (one that adds no text, e.g. the first part of
    a UTF-8 character, is skipped)."""
    return [signals[i] for i in _span_indices(signals, span)]


def _span_indices(signals: Sequence[TokenSignal], span: tuple[int, int]) -> list[int]:
    out, begin = [], 0
    for i, s in enumerate(signals):
        if s.end > begin and begin < span[1] and s.end > span[0]:
            out.append(i)
        begin = max(begin, s.end)
    return out


# --------------------------------------------------------------------------- features


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def span_features(
    tokens: Sequence[TokenSignal], ending: TokenSignal | None = None
) -> dict[str, float | None]:
    """The logits' and the attention's features of the span's tokens (None: unavailable);
    ``ending``: the token generated after the span's last one (None: the text ended there)."""
    if not tokens:
        return dict.fromkeys((*LOGIT_FEATURES, *ATTENTION_FEATURES))
    lps = [max(t.logprob, -50.0) for t in tokens]  # -inf (a masked token) would swamp a mean
    margins = [
        None if t.top2 is None else math.exp(t.top2[0]) - math.exp(t.top2[1]) for t in tokens
    ]
    out: dict[str, float | None] = {
        "mean_logprob": sum(lps) / len(lps),
        "min_logprob": min(lps),
        "first_logprob": lps[0],
        "first_margin": margins[0],
        "min_margin": None if None in margins else min(m for m in margins if m is not None),
        "mean_entropy": _mean([t.metrics[0] for t in tokens]),
        "mean_varentropy": _mean([t.metrics[1] for t in tokens]),
        "log_tokens": math.log(len(tokens)),
        "mean_margin": None if None in margins else _mean(margins),
        "sum_logprob": sum(lps),
    }
    with_end = lps + ([] if ending is None else [max(ending.logprob, -50.0)])
    out["answer_mean_logprob"] = sum(with_end) / len(with_end)
    out["answer_sum_logprob"] = sum(with_end)
    for i, name in enumerate(ATTENTION_FEATURES, start=2):
        out[name] = _mean([t.metrics[i] for t in tokens])
    return out


def features(
    text: str,
    signals: Sequence[TokenSignal],
    span: tuple[int, int] | None,
    prompt: str | None = None,
) -> dict[str, float | None]:
    """The span's features (ending: the token after it), the whole generation's
    (``CONTEXT_FEATURES``) and the checks' (``answer_checks``; ``copied`` only with the
    ``prompt``'s text, ``answer_checks.question_text``)."""
    ix = _span_indices(signals, span) if span else []
    last = ix[-1] + 1 if ix else 0  # one past the span's last token
    ending = signals[last] if ix and last < len(signals) else None
    out = span_features([signals[i] for i in ix], ending)
    lps = [max(s.logprob, -50.0) for s in signals]
    before = [max(s.logprob, -50.0) for s in signals if span is not None and s.end <= span[0]]
    through = lps[: last + 1] if ix else []
    out["prefix_mean_logprob"] = sum(before) / len(before) if before else 0.0
    out["whole_mean_logprob"] = sum(lps) / len(lps) if lps else None
    out["through_mean_logprob"] = sum(through) / len(through) if through else None
    out["whole_mean_entropy"] = _mean([s.metrics[0] for s in signals])
    out["span_start"] = span[0] / max(len(text), 1) if span else None
    out["wrong_arithmetic"] = wrong_arithmetic(text[: span[1]]) if span else None
    out["copied"] = copied(prompt, text[span[0] : span[1]]) if span and prompt else None
    return out


# --------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class LogisticMap:
    """p = sigmoid(intercept + sum coef_i (x_i - mean_i) / scale_i)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def __call__(self, feats: dict[str, float | None]) -> float | None:
        z = self.intercept
        for name, m, s, c in zip(self.features, self.mean, self.scale, self.coef, strict=True):
            x = feats.get(name)
            if x is None or not math.isfinite(x):
                return None
            z += c * (x - m) / s
        return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LogisticMap:
        fields = [tuple(float(x) for x in d[k]) for k in ("mean", "scale", "coef")]
        if not all(len(f) == len(d["features"]) for f in fields):
            raise ValueError("features, mean, scale and coef need the same length")
        return cls(tuple(d["features"]), *fields, float(d["intercept"]))


@dataclass(frozen=True)
class IsotonicMap:
    """p = the piecewise-linear interpolation of the knots (x_i, p_i) at ``feature`` (x and p
    non-decreasing; constant beyond the ends): a monotone map of one score."""

    feature: str
    x: tuple[float, ...]
    p: tuple[float, ...]

    def __call__(self, feats: dict[str, float | None]) -> float | None:
        v = feats.get(self.feature)
        if v is None or not math.isfinite(v):
            return None
        i = bisect.bisect_right(self.x, v)
        if i == 0 or i == len(self.x):
            return self.p[0] if i == 0 else self.p[-1]
        x0, x1, p0, p1 = self.x[i - 1], self.x[i], self.p[i - 1], self.p[i]
        return p0 + (p1 - p0) * (v - x0) / (x1 - x0) if x1 > x0 else p1

    def to_dict(self) -> dict[str, Any]:
        return {"type": "isotonic", "feature": self.feature, "x": list(self.x), "p": list(self.p)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IsotonicMap:
        x, p = tuple(float(v) for v in d["x"]), tuple(float(v) for v in d["p"])
        if not x or len(x) != len(p) or list(x) != sorted(x) or list(p) != sorted(p):
            raise ValueError("an isotonic map needs non-decreasing x and p of one length")
        return cls(str(d["feature"]), x, p)


Map = LogisticMap | IsotonicMap
FORMAT_FEATURE = "format_raw"


@dataclass(frozen=True)
class ConfidenceModel:
    """One fitted map per prompt format ("chat", "raw"); "chat" serves a format not fitted."""

    maps: dict[str, Map]
    meta: dict[str, Any]  # every map also sees FORMAT_FEATURE (a pooled fit serves both)
    # Per format: the most confidence an answer gets that fails a check (``answer_checks``:
    # such answers' accuracy on dev); a format without an entry has no such cap.
    failed_check: dict[str, float] = field(default_factory=dict)

    def __call__(self, feats: dict[str, float | None], fmt: str = "chat") -> float | None:
        m = self.map_for(fmt, feats.get(AGREEMENT_FEATURE) is not None)
        return self.capped(m({**feats, FORMAT_FEATURE: float(fmt == "raw")}), feats, fmt)

    def capped(self, p: float | None, feats: dict[str, float | None], fmt: str) -> float | None:
        """``p`` capped at the format's ``failed_check`` where the answer fails a check."""
        cap = self.failed_check.get(fmt if fmt in self.maps else "chat")
        return p if p is None or cap is None or not failed(feats) else min(p, cap)

    def map_for(self, fmt: str, agreement: bool = False) -> Map:  # with it: its map, if any
        m = self.maps.get(fmt + AGREEMENT_SUFFIX) if agreement else None
        return m or self.maps.get(fmt) or self.maps.get("chat") or next(iter(self.maps.values()))

    def to_json(self) -> str:
        maps = {k: m.to_dict() for k, m in self.maps.items()}
        data = {"maps": maps, "failed_check": self.failed_check, "meta": self.meta}
        return json.dumps(data, indent=1) + "\n"

    @classmethod
    def from_file(cls, path: str | Path) -> ConfidenceModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        maps: dict[str, Map] = {
            k: (IsotonicMap if v.get("type") == "isotonic" else LogisticMap).from_dict(v)
            for k, v in data["maps"].items()
        }
        if not maps:
            raise ValueError(f"{path}: no fitted map")
        # "wrong_arithmetic": the key when the arithmetic was the only check
        caps = data.get("failed_check", data.get("wrong_arithmetic", {}))
        caps = {k: float(v) for k, v in caps.items()}
        return cls(maps, data.get("meta", {}), caps)


@lru_cache(maxsize=8)
def shipped_model(model_name: str) -> ConfidenceModel | None:
    """The confidence map shipped for this model (``config.shipped_file``), or None: then
    generations carry no confidence."""
    path = shipped_file(CONFIDENCE_DIR, model_name)
    return ConfidenceModel.from_file(path) if path else None


@dataclass(frozen=True)
class Scored:
    confidence: float | None
    span: tuple[int, int] | None
    features: dict[str, float | None]


def score(text: str, signals: Sequence[TokenSignal], model: ConfidenceModel | None,
          fmt: str = "chat", kind: Kind | None = None, options: dict[str, str] | None = None,
          agreement: float | None = None, prompt: str | None = None) -> Scored:  # fmt: skip
    """The answer's span, its features and (with a model) its confidence; ``agreement``: of
    hidden sampled rows (None: none, the features and map without it); ``prompt``: a raw
    prompt's text (its solved examples, ``answer_checks.copied``)."""
    span = answer_span(text, kind, options)
    feats = features(text, signals, span, prompt)
    feats |= {} if agreement is None else {AGREEMENT_FEATURE: agreement}
    conf = model(feats, fmt) if model is not None and span is not None else None
    return Scored(None if conf is None else round(conf, 6), span, feats)


def abstains(confidence: float | None, min_confidence: float | None) -> bool:
    """Below the threshold, the answer is an abstention (no confidence: never)."""
    return min_confidence is not None and confidence is not None and confidence < min_confidence


def reading(confidence: float | None) -> str:
    """Plain words for a confidence (the UI badge uses the same cut points)."""
    if confidence is None:
        return "no confidence"
    return (
        "likely right" if confidence >= 0.7 else "unsure" if confidence >= 0.35 else "likely wrong"
    )


def with_abstention(event: Any, min_confidence: float | None) -> Any:
    """A done event marked ``abstained`` below ``min_confidence``; other events unchanged."""
    if min_confidence is None or getattr(event, "type", None) != "done":
        return event
    return event.model_copy(update={"abstained": abstains(event.confidence, min_confidence)})
