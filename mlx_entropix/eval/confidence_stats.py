"""How good a confidence is, measured as the selective-prediction literature measures it.

Pure functions on (confidence, correct) pairs:

- ``auroc``: the probability that a right answer gets a higher confidence than a wrong one
  (ties count one half: the Mann-Whitney statistic); None without both kinds of answer.
- ``within_category_auroc``: the mean AUROC of the categories that have both kinds.
- ``ece``: expected calibration error over ``bins`` equal-width bins of [0, 1]: the
  answer-weighted mean |accuracy - mean confidence| of each bin (a confidence of exactly 1
  falls in the last bin).
- ``ece_floor``: the ECE a perfectly calibrated confidence measures on the same confidences
  (each answer right with probability its confidence; mean over draws): ECE is biased upward
  on few answers (40 spread over 10 bins: ~0.13), so a measured ECE reads against this.
- ``reliability``: the per-bin (mean confidence, accuracy, count) behind the ECE.
- ``risk_coverage``: accuracy of the k most confident answers for k = 1..n (coverage k/n);
  equal confidences keep their input order (a stable sort).
- ``top_half_accuracy``: accuracy of the most confident ceil(n/2) answers.
- ``paired_bootstrap``: the difference of a statistic between two scorings of the same
  answers, with a percentile interval from resampling the answers (both scorings get the
  same resample: the comparison is paired). Seeded: the same answers give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def auroc(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    s, y = np.asarray(scores, float), np.asarray(correct, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    # Mann-Whitney U from average ranks (ties get the mean rank: they count 1/2); a run of
    # equal scores ending at 1-based rank ``end`` has the mean rank end - (count - 1) / 2.
    _, group, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[group]
    u = ranks[y].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def within_category_auroc(
    scores: Sequence[float], correct: Sequence[bool], categories: Sequence[str]
) -> float | None:
    s, y, k = np.asarray(scores, float), np.asarray(correct, bool), np.asarray(categories)
    found = (auroc(s[k == cat], y[k == cat]) for cat in dict.fromkeys(categories))
    vals = [a for a in found if a is not None]
    return sum(vals) / len(vals) if vals else None


def reliability(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> list[dict[str, float]]:
    """Per non-empty bin: its range, mean confidence, accuracy and count."""
    c, y = np.asarray(confidence, float), np.asarray(correct, float)
    idx = np.minimum((c * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(
                {
                    "lo": b / bins,
                    "hi": (b + 1) / bins,
                    "confidence": float(c[m].mean()),
                    "accuracy": float(y[m].mean()),
                    "count": int(m.sum()),
                }
            )
    return out


def ece(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    n = len(confidence)
    if n == 0:
        return 0.0
    rows = reliability(confidence, correct, bins)
    return float(sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / n)


def ece_floor(confidence: Sequence[float]) -> float:
    c = np.asarray(confidence, float)
    if not len(c):
        return 0.0
    rng = np.random.default_rng(0)
    return float(np.mean([ece(c, rng.random(len(c)) < c) for _ in range(500)]))


def risk_coverage(scores: Sequence[float], correct: Sequence[bool]) -> list[tuple[float, float]]:
    """(coverage, accuracy of the most confident answers at that coverage), k = 1..n."""
    s, y = np.asarray(scores, float), np.asarray(correct, float)
    order = np.argsort(-s, kind="stable")
    hits = np.cumsum(y[order])
    k = np.arange(1, len(s) + 1)
    return [(float(a), float(b)) for a, b in zip(k / len(s), hits / k, strict=True)]


def top_half_accuracy(scores: Sequence[float], correct: Sequence[bool]) -> float | None:
    if not len(scores):
        return None
    curve = risk_coverage(scores, correct)
    return curve[math.ceil(len(curve) / 2) - 1][1]


def paired_bootstrap(
    stat: Callable[[np.ndarray, np.ndarray], float | None],
    a: Sequence[float],
    b: Sequence[float],
    correct: Sequence[bool],
    n_boot: int = 2000,
) -> dict[str, Any]:
    """stat(a) - stat(b) and its 95% percentile interval over paired resamples of answers
    (a resample where the statistic is undefined, e.g. one class only, is skipped)."""
    a_, b_, y = np.asarray(a, float), np.asarray(b, float), np.asarray(correct, bool)
    sa, sb = stat(a_, y), stat(b_, y)
    if sa is None or sb is None:
        return {"diff": None, "ci95": None, "n_boot": 0}
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        da, db = stat(a_[i], y[i]), stat(b_[i], y[i])
        if da is not None and db is not None:
            diffs.append(da - db)
    lo, hi = np.percentile(diffs, [2.5, 97.5]) if diffs else (math.nan, math.nan)
    return {"diff": sa - sb, "ci95": [float(lo), float(hi)], "n_boot": len(diffs)}


def summarize_confidence(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """AUROC (overall, per category and their mean, per format), ECE, reliability, top-half
    accuracy vs all and the risk-coverage curve of records that carry a confidence."""
    recs = [r for r in records if r.get("confidence") is not None]
    if not recs:
        return None

    def block(rs: Sequence[dict[str, Any]], curves: bool = False) -> dict[str, Any]:
        c = [r["confidence"] for r in rs]
        y = [bool(r["correct"]) for r in rs]
        out: dict[str, Any] = {
            "n": len(rs),
            "accuracy": sum(y) / len(y),
            "auroc": auroc(c, y),
            "ece": ece(c, y),
            "top_half_accuracy": top_half_accuracy(c, y),
            "mean_confidence": sum(c) / len(c),
        }
        if curves:  # the whole set's and each format's, with the mean AUROC of its categories
            out["reliability"] = reliability(c, y)
            out["risk_coverage"] = [[round(a, 4), round(b, 4)] for a, b in risk_coverage(c, y)]
            cats = [r.get("category") or "" for r in rs]
            out["within_category_auroc"] = within_category_auroc(c, y, cats)
        return out

    def groups(key: str) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for r in recs:
            out.setdefault(r.get(key) or "", []).append(r)
        return dict(sorted(out.items()))

    return {
        **block(recs, True),
        "per_category": {c: block(rs) for c, rs in groups("category").items()},
        "per_format": {f: block(rs, True) for f, rs in groups("format").items()},
    }
