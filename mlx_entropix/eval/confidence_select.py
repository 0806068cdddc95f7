"""Choosing the answer-confidence map on dev by how it does on a KIND of question it was not
fitted on (leave one category out), since that is what a user's new task is.

A candidate is a score (one feature, or a regularized logistic combination of a few), a map
(logistic, or isotonic on one feature), fitted per prompt format or pooled over both formats
with a format indicator, and optionally recalibrated: Platt scaling of the map's logit (the
logistic's linear predictor, an isotonic map's knots) on its leave-one-category-out values
(flattens a map that separates the fitted kinds better than a new one: a large ECE there).

The rule (``choose``), per format: the best leave-one-category-out AUROC plus within-category
AUROC (the ranking), preferring fewer features within 2 x ``TOLERANCE`` of the best (on a small
dev set the simpler one generalizes more often); then among that score's map variants that
rank nearly as well (``VARIANT_TOLERANCE``), the lowest leave-one-category-out ECE. An answer
that fails a check on its own text (``engine.answer_checks``) is capped at such answers' dev
accuracy (pooled over formats; held out, from the other categories), the map then fitted on
the other answers: chosen per format where it does not lower the ranking, the candidates then
compared again with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..engine.answer_checks import failed
from ..engine.confidence import (
    ATTENTION_FEATURES,
    CONTEXT_FEATURES,
    FORMAT_FEATURE,
    LOGIT_FEATURES,
    ConfidenceModel,
    IsotonicMap,
    LogisticMap,
    Map,
)
from .confidence_fit import (
    capped,
    check_cap,
    fit_logistic,
    fit_map,
    fmt_of,
    predict,
    scores_report,
    usable,
)
from .confidence_stats import auroc, paired_bootstrap

# Simpler wins only among practically equal candidates (sum of the two AUROCs within
# 2 x TOLERANCE; dev's AUROC intervals are +-0.04). At 0.005 raw went to a 12-feature map
# 0.01 ahead of one score (log p of the answer and its end) with a worse ECE; the earlier
# many-feature maps had learnt dev's kinds and lost 0.15 AUROC on test's.
TOLERANCE = 0.01
# A map variant of one score (Platt, recalibrated, isotonic) changes the ranking only through
# ties and its held-out fit: one that ranks up to this much worse (sum of the two AUROCs) may
# win on ECE, the other goal.
VARIANT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Candidate:
    name: str
    features: tuple[str, ...]
    l2: float = 1.0
    kind: str = "logistic"  # or "isotonic" (one feature)
    recalibrate: bool = False  # Platt on the leave-one-category-out logit (either map)
    pooled: bool = False  # one map for both formats, with the format as a feature


def with_format(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records whose features carry the format indicator (what ``ConfidenceModel`` adds)."""
    return [dict(r, features={**r["features"], FORMAT_FEATURE: float(fmt_of(r) == "raw")})
            for r in records]  # fmt: skip


def fit_isotonic(x: Sequence[float], y: Sequence[bool], feature: str) -> IsotonicMap:
    """Pool-adjacent-violators on (x, y); knots at each block's mean x, values its accuracy
    with one pseudo-answer of each kind (never exactly 0 or 1 from a small block)."""
    order = np.argsort(np.asarray(x, float), kind="stable")
    blocks: list[list[float]] = []  # [sum x, sum y, n]
    for i in order:
        blocks.append([float(x[i]), float(y[i]), 1.0])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            sx, sy, n = blocks.pop()
            blocks[-1] = [blocks[-1][0] + sx, blocks[-1][1] + sy, blocks[-1][2] + n]
    xs = [b[0] / b[2] for b in blocks]
    ps = np.maximum.accumulate([(b[1] + 1) / (b[2] + 2) for b in blocks])
    return IsotonicMap(
        feature, tuple(round(v, 6) for v in xs), tuple(round(float(v), 6) for v in ps)
    )


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def fit_candidate(records: Sequence[dict[str, Any]], c: Candidate) -> Map:
    """The candidate's map fitted on ``records`` (one format's, or both when pooled)."""
    recs = usable(records, c.features)
    if c.kind == "isotonic":
        (f,) = c.features
        base: Map = fit_isotonic(
            [r["features"][f] for r in recs], [bool(r["correct"]) for r in recs], f
        )
    else:
        base = fit_map(recs, c.features, c.l2)
    if not c.recalibrate:
        return base
    held = leave_category_out(recs, replace(c, recalibrate=False))
    ix = [i for i, p in enumerate(held) if p is not None]
    z = np.array([[_logit(held[i])] for i in ix])  # type: ignore[arg-type]
    y = np.array([float(bool(recs[i]["correct"])) for i in ix])
    if len(set(y)) < 2:
        return base
    mu, sd = float(z.mean()), float(z.std()) or 1.0
    (b,), a = fit_logistic((z - mu) / sd, y, l2=1e-3)
    if b <= 0:  # the score ranks the held-out kinds backwards: no slope, only the base rate
        (b,), a = fit_logistic(np.zeros_like(z), y, l2=1e-3)
    slope = b / sd  # p = sigmoid(a + slope * (z - mu)), z the base map's logit
    if isinstance(base, IsotonicMap):  # the same Platt step on each knot's logit
        ps = (1 / (1 + math.exp(-(a + slope * (_logit(p) - mu)))) for p in base.p)
        return IsotonicMap(base.feature, base.x, tuple(round(v, 6) for v in ps))
    return LogisticMap(base.features, base.mean, base.scale,
                       tuple(round(float(slope * w), 6) for w in base.coef),
                       round(float(a + slope * (base.intercept - mu)), 6))  # fmt: skip


def leave_category_out(
    records: Sequence[dict[str, Any]], c: Candidate, capped_out: bool = False
) -> list[float | None]:
    """Each record scored by the candidate fitted on the other categories (of its format, or
    both when pooled; ``capped_out``: less the answers the check cap scores)."""
    out: list[float | None] = [None] * len(records)
    for cat in sorted({r.get("category", "") for r in records}):
        train = [r for r in records if r.get("category", "") != cat
                 and not (capped_out and failed(r["features"]))]  # fmt: skip
        if len({bool(r["correct"]) for r in train}) < 2:
            continue
        m = fit_candidate(train, c)
        for i, r in enumerate(records):
            if r.get("category", "") == cat:
                out[i] = m(r["features"])
    return out


def evaluate(
    records: Sequence[dict[str, Any]], c: Candidate, caps: Sequence[str] = ()
) -> dict[str, Any]:
    """Leave-one-category-out figures of a candidate, per format (``scores_report``), with the
    check cap for the formats in ``caps``."""
    recs = usable(with_format(records), c.features)
    if c.pooled:
        held = leave_category_out(recs, c, capped_out=bool(caps))
        return scores_report(capped(held, recs, recs, caps), recs)
    out: dict[str, Any] = {}
    for fmt in sorted({fmt_of(r) for r in recs}):
        sub = [r for r in recs if fmt_of(r) == fmt]
        held = leave_category_out(sub, c, capped_out=fmt in caps)
        out[fmt] = scores_report(capped(held, sub, recs, caps), sub)[fmt]
    return out


def _score_key(c: Candidate) -> tuple[Any, ...]:
    """What decides the ranking: the features, beyond one their l2 and pooled or not; one
    score's map variants share it (one feature's map, per format or pooled, ranks alike)."""
    return (c.features, *((c.pooled, c.l2) if _size(c) > 1 else ()))


# Where the caller stops a raw text decides what these see (the evaluation stops at a line
# break, a user's request may run on: "85\n13 x 4 = 52\n..."), so dev, always stopped, would
# vouch for them on raw text where they are noise. A chat answer ends at the model's own end.
STOP_DEPENDENT: tuple[str, ...] = ("whole_mean_logprob", "whole_mean_entropy", "span_start")


def _size(c: Candidate) -> int:
    return len([f for f in c.features if f != FORMAT_FEATURE])


def choose(
    results: dict[str, dict[str, Any]], candidates: Sequence[Candidate], fmt: str
) -> Candidate:
    """The rule of the module docstring, on ``evaluate``'s figures by candidate name."""
    by_name = {c.name: c for c in candidates}
    banned = set(STOP_DEPENDENT) if fmt == "raw" else set()
    rows = [(by_name[n], r[fmt]) for n, r in results.items() if fmt in r
            and r[fmt]["auroc"] is not None and not banned & set(by_name[n].features)]  # fmt: skip
    if not rows:
        raise ValueError(f"no candidate scores {fmt} answers")

    def ranking(b: dict[str, Any]) -> float:
        return b["auroc"] + (b["within_category_auroc"] or b["auroc"])

    best = max(ranking(b) for _, b in rows)
    near = [(c, b) for c, b in rows if ranking(b) >= best - 2 * TOLERANCE]
    pick = max(near, key=lambda cb: (-_size(cb[0]), ranking(cb[1])))  # fewest, then best
    variants = [(c, b) for c, b in rows if _score_key(c) == _score_key(pick[0])
                and ranking(b) >= ranking(pick[1]) - VARIANT_TOLERANCE]  # fmt: skip
    return min(variants, key=lambda cb: cb[1]["ece"])[0]


SINGLES: tuple[str, ...] = (
    "mean_logprob", "min_logprob", "first_logprob", "first_margin", "min_margin",
    "whole_mean_logprob", "mean_margin", "sum_logprob", "answer_mean_logprob",
    "answer_sum_logprob", "through_mean_logprob",
)  # fmt: skip
SETS: dict[str, tuple[str, ...]] = {
    "min+whole": ("min_logprob", "whole_mean_logprob"),
    "margin+whole": ("first_margin", "whole_mean_logprob"),
    "mean margin+whole": ("mean_margin", "whole_mean_logprob"),
    "mean+min+whole": ("mean_logprob", "min_logprob", "whole_mean_logprob"),
    "margin+min+entropy": ("first_margin", "min_logprob", "mean_entropy"),
    "margin+answer": ("first_margin", "answer_mean_logprob"),
    "min+answer": ("min_logprob", "answer_mean_logprob"),
    "answer+whole": ("answer_mean_logprob", "whole_mean_logprob"),
    "answer+through": ("answer_mean_logprob", "through_mean_logprob"),
    "span logits": LOGIT_FEATURES,
    "logits": (*LOGIT_FEATURES, *CONTEXT_FEATURES),
    "span logits+attention": (*LOGIT_FEATURES, *ATTENTION_FEATURES),
    "logits+attention": (*LOGIT_FEATURES, *CONTEXT_FEATURES, *ATTENTION_FEATURES),
}


def candidates() -> list[Candidate]:
    """The list compared: each single feature's maps (logistic and isotonic, variants below);
    each set at l2 1 and 10, recalibrated or not, per format and pooled."""
    out = []
    for f in SINGLES:
        out += [
            Candidate(f, (f,)),
            Candidate(f"{f} (recal)", (f,), recalibrate=True),
            Candidate(f"{f} (isotonic)", (f,), kind="isotonic"),
            # one map of one score for both formats: a level that does not hang on the format
            Candidate(f"{f} (isotonic) pooled", (f,), kind="isotonic", pooled=True),
            Candidate(f"{f} (isotonic, recal)", (f,), kind="isotonic", recalibrate=True),
        ]
    for name, fs in SETS.items():
        for l2 in (1.0, 10.0):
            for recal in (False, True):
                for pooled in (False, True):
                    tags = (" (recal)" if recal else "") + (" pooled" if pooled else "")
                    label = f"{name} l2={l2:g}{tags}"
                    feats = (*fs, FORMAT_FEATURE) if pooled else fs
                    out.append(Candidate(label, feats, l2, recalibrate=recal, pooled=pooled))
    return out


def bootstrap(
    conf: Sequence[float | None], records: Sequence[dict[str, Any]], n_boot: int = 1000
) -> dict[str, list[float] | None]:
    """95% percentile intervals of ``scores_report``'s figures (overall block) and of the
    top half's gain over all, resampling answers within each category (the categories' mix
    stays that of the set)."""
    rows = [(c, r) for c, r in zip(conf, records, strict=True) if c is not None]
    by_cat: dict[str, list[int]] = {}
    for i, (_, r) in enumerate(rows):
        by_cat.setdefault(r.get("category", ""), []).append(i)
    rng = np.random.default_rng(0)
    keys = ("auroc", "within_category_auroc", "ece", "gain")
    draws: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(n_boot):
        ix = [int(j) for ids in by_cat.values() for j in rng.choice(ids, len(ids))]
        c, rs = [rows[i][0] for i in ix], [rows[i][1] for i in ix]
        b = scores_report(c, rs)["all"]
        b["gain"] = (
            None if b["top_half_accuracy"] is None else b["top_half_accuracy"] - b["accuracy"]
        )
        for k in keys:
            if b[k] is not None:
                draws[k].append(b[k])
    return {k: ([float(v) for v in np.percentile(d, [2.5, 97.5])] if d else None)
            for k, d in draws.items()}  # fmt: skip


def _format_records(
    records: Sequence[dict[str, Any]], c: Candidate, fmt: str
) -> list[dict[str, Any]]:
    """The records a candidate is fitted on for ``fmt``: that format's, or both when pooled."""
    recs = usable(with_format(records), c.features)
    return recs if c.pooled else [r for r in recs if fmt_of(r) == fmt]


def select(
    dev: Sequence[dict[str, Any]], cands: Sequence[Candidate] | None = None
) -> tuple[dict[str, Candidate], dict[str, dict[str, Any]], list[str]]:
    """Every candidate's leave-one-category-out figures on dev and the choice per format; if
    the check cap does not lower the choice's ranking (``choose_caps``), again with it."""
    cands = list(cands or candidates())
    formats = sorted({fmt_of(r) for r in dev})
    results = {c.name: evaluate(dev, c) for c in cands}
    chosen = {f: choose(results, cands, f) for f in formats}
    caps = choose_caps(dev, chosen)
    if caps:
        results = {c.name: evaluate(dev, c, caps) for c in cands}
        chosen = {f: choose(results, cands, f) for f in formats}
    return chosen, results, caps


def fit_chosen(
    dev: Sequence[dict[str, Any]],
    chosen: dict[str, Candidate],
    meta: dict[str, Any],
    caps: Sequence[str] = (),
) -> ConfidenceModel:
    """The shipped model: each format's chosen candidate fitted on all of dev; the arithmetic
    cap (fitted on all of dev) for the formats in ``caps``, their map then fitted on the
    answers the cap does not score."""
    unflagged = [r for r in dev if not failed(r["features"])]
    maps = {f: fit_candidate(_format_records(unflagged if f in caps else dev, c, f), c)
            for f, c in chosen.items()}  # fmt: skip
    cap = check_cap(dev)
    failed_check = {f: round(cap, 6) for f in caps if cap is not None}
    meta = {**meta, "chosen": {f: c.name for f, c in chosen.items()}}
    return ConfidenceModel(maps, meta, failed_check)


def attention_test(
    dev: Sequence[dict[str, Any]],
    test: Sequence[dict[str, Any]],
    chosen: dict[str, Candidate],
    caps: Sequence[str] = (),
    n_boot: int = 2000,
) -> dict[str, Any]:
    """The chosen map without the four attention features vs with them (logistic, same l2 and
    recalibration), capped as shipped: AUROC of each and the paired bootstrap interval of the
    difference, leave one category out on dev and fitted on dev for test, per format."""
    out: dict[str, Any] = {"dev (leave one category out)": {}, "test (fitted on dev)": {}}
    for fmt, c in chosen.items():
        base = replace(c, features=tuple(f for f in c.features if f not in ATTENTION_FEATURES))
        att = replace(base, name=f"{base.name} + attention", kind="logistic",
                      features=(*base.features, *ATTENTION_FEATURES))  # fmt: skip
        ok, tests = (usable(with_format(x), att.features) for x in (dev, test))
        (rs, pa), (_, pb) = held_out(ok, {fmt: base}, caps), held_out(ok, {fmt: att}, caps)
        splits = {"dev (leave one category out)": (rs, pa, pb)}
        if tests := [r for r in tests if fmt_of(r) == fmt]:  # each fitted as shipped
            models = [fit_chosen(ok, {fmt: m}, {}, caps) for m in (base, att)]
            splits["test (fitted on dev)"] = (tests, *(predict(m, tests) for m in models))
        for split, (recs, qa, qb) in splits.items():
            ix = [i for i in range(len(recs)) if qa[i] is not None and qb[i] is not None]
            y = [bool(recs[i]["correct"]) for i in ix]
            a, b = [qa[i] for i in ix], [qb[i] for i in ix]
            out[split][fmt] = {  # the difference: with attention minus without
                "n": len(y),
                "auroc_logits": auroc(a, y),  # type: ignore[arg-type]
                "auroc_with_attention": auroc(b, y),  # type: ignore[arg-type]
                "difference": paired_bootstrap(auroc, b, a, y, n_boot),  # type: ignore[arg-type]
            }
    return out


def held_out(
    dev: Sequence[dict[str, Any]], chosen: dict[str, Candidate], caps: Sequence[str] = ()
) -> tuple[list[dict[str, Any]], list[float | None]]:
    """Dev's answers of every chosen format, each scored leave one category out (with the
    check cap for the formats in ``caps``)."""
    recs: list[dict[str, Any]] = []
    preds: list[float | None] = []
    for fmt, c in chosen.items():
        rs = _format_records(dev, c, fmt)
        p = leave_category_out(rs, c, capped_out=fmt in caps)
        keep = [i for i, r in enumerate(rs) if fmt_of(r) == fmt]
        mine = [rs[i] for i in keep]
        recs += mine
        preds += capped([p[i] for i in keep], mine, dev, caps)
    return recs, preds


def choose_caps(dev: Sequence[dict[str, Any]], chosen: dict[str, Candidate]) -> list[str]:
    """The formats whose leave-one-category-out ranking (AUROC + within-category AUROC) the
    check cap does not lower."""

    def ranking(recs: list[dict[str, Any]], preds: list[float | None]) -> float:
        b = scores_report(preds, recs)["all"]
        return (b["auroc"] or 0.5) + (b["within_category_auroc"] or 0.5)

    if check_cap(dev) is None:
        return []
    return [f for f, c in chosen.items()
            if ranking(*held_out(dev, {f: c}, [f])) >= ranking(*held_out(dev, {f: c}))]  # fmt: skip
