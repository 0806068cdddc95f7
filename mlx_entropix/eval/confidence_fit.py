"""Fitting pieces of the answer-confidence map (chosen by ``confidence_select.py``).

Every record of an evaluation carries the answer span's ``features`` (``confidence.py``);
a logistic map is an L2-regularized logistic regression on standardized features (Newton's
method, numpy only), one per prompt format (chat, raw). Also: the figures of a scoring
(``scores_report``), the records refeaturized from their kept signals, a result rescored by
a new map, and the cap of answers that fail a check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..answers import parse_options
from ..engine.answer_checks import failed
from ..engine.confidence import ConfidenceModel, LogisticMap, TokenSignal, answer_span
from ..engine.confidence import features as span_features
from .confidence_stats import auroc, ece, top_half_accuracy, within_category_auroc
from .harness import load_items
from .stats import summarize

L2 = 1.0


def fmt_of(record: dict[str, Any]) -> str:
    """A record's prompt format (chat when it has none)."""
    return record.get("format", "chat")


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[np.ndarray, float]:
    """Coefficients and intercept maximizing the log-likelihood minus l2/2 |coef|^2 (the
    intercept is not penalized). ``x`` is (n, d), already standardized."""
    n, d = x.shape
    xb = np.hstack([np.ones((n, 1)), x])
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[0] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w[1:], float(w[0])


def usable(records: Sequence[dict[str, Any]], features: Sequence[str]) -> list[dict[str, Any]]:
    """Records whose every feature is known (an empty generation has none)."""
    return [r for r in records if all(r["features"].get(f) is not None for f in features)]


def fit_map(
    records: Sequence[dict[str, Any]], features: Sequence[str], l2: float = L2
) -> LogisticMap:
    recs = usable(records, features)
    if len({bool(r["correct"]) for r in recs}) < 2:
        raise ValueError("fitting needs both right and wrong answers")
    x = np.array([[r["features"][f] for f in features] for r in recs], float)
    y = np.array([bool(r["correct"]) for r in recs], float)
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    coef, intercept = fit_logistic((x - mean) / scale, y, l2)
    return LogisticMap(
        tuple(features),
        tuple(round(float(v), 6) for v in mean),
        tuple(round(float(v), 6) for v in scale),
        tuple(round(float(v), 6) for v in coef),
        round(intercept, 6),
    )


def fit_model(
    records: Sequence[dict[str, Any]], features: Sequence[str], l2: float = L2, meta: Any = None
) -> ConfidenceModel:
    """One map per prompt format present in ``records``."""
    formats = sorted({fmt_of(r) for r in records})
    maps = {f: fit_map([r for r in records if fmt_of(r) == f], features, l2) for f in formats}
    return ConfidenceModel(maps, dict(meta or {}))


def predict(model: ConfidenceModel, records: Sequence[dict[str, Any]]) -> list[float | None]:
    return [model(r["features"], fmt_of(r)) for r in records]


def out_of_fold(
    records: Sequence[dict[str, Any]], features: Sequence[str], folds: int = 5, l2: float = L2
) -> list[float | None]:
    """Each record scored by a map fitted on the other folds (folds by item, interleaved)."""
    out: list[float | None] = [None] * len(records)
    for k in range(folds):
        model = fit_model([r for i, r in enumerate(records) if i % folds != k], features, l2)
        out[k::folds] = predict(model, records[k::folds])
    return out


def scores_report(
    conf: Sequence[float | None], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """AUROC, within-category mean AUROC, ECE and top-half accuracy, overall and per format."""
    rows = [(c, r) for c, r in zip(conf, records, strict=True) if c is not None]

    def block(rs: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
        c = [x for x, _ in rs]
        y = [bool(r["correct"]) for _, r in rs]
        return {
            "n": len(rs),
            "accuracy": sum(y) / len(y) if y else None,
            "auroc": auroc(c, y),
            "within_category_auroc": within_category_auroc(
                c, y, [r.get("category", "") for _, r in rs]
            ),
            "ece": ece(c, y),
            "top_half_accuracy": top_half_accuracy(c, y),
        }

    formats = sorted({fmt_of(r) for _, r in rows})
    return {
        "all": block(rows),
        **{f: block([(c, r) for c, r in rows if fmt_of(r) == f]) for f in formats},
    }


def refeaturized(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The records with span and features recomputed from their ``signals`` (``--signals``)
    by the current ``confidence.py``: new features without generating again. The items'
    kinds and options come from the result's CSV."""
    recs = result["records"]
    if not any("signals" in r for r in recs):
        return recs
    items = {i.index: i for i in load_items(result["run"]["csv"])}
    out = []
    for r in recs:
        sig = r.get("signals")
        if sig is None:
            out.append(r)
            continue
        item = items[r["item"]]
        signals = [
            TokenSignal(e, lp, None if t is None else tuple(t), tuple(m))  # type: ignore[arg-type]
            for e, lp, t, m in zip(
                sig["end"], sig["logprob"], sig["top2"], sig["metrics"], strict=True
            )
        ]
        options = parse_options(item.prompt) if item.kind == "choice" else None
        span = answer_span(r["text"], item.kind, options)
        feats = span_features(r["text"], signals, span, item.prompt)  # the raw text or the question
        out.append({**r, "answer_span": span, "features": feats})
    return out


def rescored(result: dict[str, Any], model: ConfidenceModel) -> dict[str, Any]:
    """An evaluation result with every record's confidence from ``model`` and the summary
    recomputed (the accuracy figures are unchanged)."""
    records = []
    for r in refeaturized(result):  # the features the fit saw (of the signals, if kept)
        c = model(r["features"], fmt_of(r))
        records.append(dict(r, confidence=None if c is None else round(c, 6)))
    run = dict(result["run"], confidence_map=model.meta)
    return {**result, "run": run, "summary": summarize(records, run["modes"]), "records": records}


def check_cap(records: Sequence[dict[str, Any]]) -> float | None:
    """The accuracy of answers that fail a check (``engine.answer_checks``), both formats
    pooled (the checks do not hang on the format), with one pseudo-answer of each kind; None
    without such answers."""
    flagged = [bool(r["correct"]) for r in records if failed(r["features"])]
    return (sum(flagged) + 1) / (len(flagged) + 2) if flagged else None


def capped(
    preds: Sequence[float | None],
    recs: Sequence[dict[str, Any]],
    pool: Sequence[dict[str, Any]],
    formats: Sequence[str] = ("chat", "raw"),
) -> list[float | None]:
    """Leave-one-category-out predictions with the cap on the answers of ``formats`` that fail
    a check, each category's cap fitted on ``pool``'s other categories."""
    caps = {k: check_cap([r for r in pool if r.get("category", "") != k])
            for k in {r.get("category", "") for r in recs}}  # fmt: skip
    return [p if p is None or not failed(r["features"]) or fmt_of(r) not in formats
            or (cap := caps[r.get("category", "")]) is None else min(p, cap)
            for p, r in zip(preds, recs, strict=True)]  # fmt: skip
