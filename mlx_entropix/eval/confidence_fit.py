"""Fitting the answer-confidence map on a development split, and the attention question.

    uv run benchmarks/eval.py data/eval/dev.csv --modes greedy --out dev       # features
    uv run python -m mlx_entropix.eval.calibrate --confidence dev.json --test core.json

Every record of an evaluation carries the answer span's ``features`` (``confidence.py``);
the map is an L2-regularized logistic regression on standardized features (Newton's method,
numpy only), one per prompt format (chat, raw). The same fit with the logits' features only
and with the four attention features added answers "does attention add anything?": AUROC of
each, the paired bootstrap interval of the difference, out-of-fold on dev (k-fold, so dev is
not scored by a map fitted on the same answers) and on test (the map fitted on all of dev).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..confidence import (
    ATTENTION_FEATURES,
    CONTEXT_FEATURES,
    LOGIT_FEATURES,
    ConfidenceModel,
    LogisticMap,
)
from .confidence_stats import auroc, ece, paired_bootstrap, top_half_accuracy

# Everything read from the logits: the span's features and the whole generation's.
LOGITS_ONLY: tuple[str, ...] = (*LOGIT_FEATURES, *CONTEXT_FEATURES)
# The shipped choice, made on dev by 5-fold out-of-fold AUROC and ECE (README "Answer
# confidence"): the logits' features and the attention features.
SHIPPED_FEATURES: tuple[str, ...] = (*LOGITS_ONLY, *ATTENTION_FEATURES)
L2 = 1.0


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
    formats = sorted({r.get("format", "chat") for r in records})
    maps = {
        f: fit_map([r for r in records if r.get("format", "chat") == f], features, l2)
        for f in formats
    }
    return ConfidenceModel(maps, dict(meta or {}))


def predict(model: ConfidenceModel, records: Sequence[dict[str, Any]]) -> list[float | None]:
    return [model(r["features"], r.get("format", "chat")) for r in records]


def out_of_fold(
    records: Sequence[dict[str, Any]], features: Sequence[str], folds: int = 5, l2: float = L2
) -> list[float | None]:
    """Each record scored by a map fitted on the other folds (folds by item, interleaved)."""
    out: list[float | None] = [None] * len(records)
    for k in range(folds):
        train = [r for i, r in enumerate(records) if i % folds != k]
        model = fit_model(train, features, l2)
        for i, r in enumerate(records):
            if i % folds == k:
                out[i] = model(r["features"], r.get("format", "chat"))
    return out


def scores_report(
    conf: Sequence[float | None], records: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """AUROC, within-category mean AUROC, ECE and top-half accuracy, overall and per format."""
    rows = [(c, r) for c, r in zip(conf, records, strict=True) if c is not None]

    def block(rs: Sequence[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
        c = [x for x, _ in rs]
        y = [bool(r["correct"]) for _, r in rs]
        cats: dict[str, list[int]] = {}
        for i, (_, r) in enumerate(rs):
            cats.setdefault(r.get("category", ""), []).append(i)
        within = [auroc([c[i] for i in ix], [y[i] for i in ix]) for ix in cats.values()]
        within = [w for w in within if w is not None]
        return {
            "n": len(rs),
            "accuracy": sum(y) / len(y) if y else None,
            "auroc": auroc(c, y),
            "within_category_auroc": sum(within) / len(within) if within else None,
            "ece": ece(c, y),
            "top_half_accuracy": top_half_accuracy(c, y),
        }

    formats = sorted({r.get("format", "chat") for _, r in rows})
    return {
        "all": block(rows),
        **{f: block([(c, r) for c, r in rows if r.get("format", "chat") == f]) for f in formats},
    }


def attention_test(
    dev: Sequence[dict[str, Any]],
    test: Sequence[dict[str, Any]],
    logit_features: Sequence[str] = LOGITS_ONLY,
    n_boot: int = 2000,
) -> dict[str, Any]:
    """AUROC with the logits' features vs with the attention features added (paired bootstrap
    95% interval of the difference), out-of-fold on dev and fitted-on-dev on test, per format
    and overall."""
    both = (*logit_features, *ATTENTION_FEATURES)
    dev, test = usable(dev, both), usable(test, both)
    splits = {
        "dev (5-fold out-of-fold)": (dev, out_of_fold(dev, logit_features), out_of_fold(dev, both))
    }
    if test:
        lo, hi = fit_model(dev, logit_features), fit_model(dev, both)
        splits["test (fitted on dev)"] = (test, predict(lo, test), predict(hi, test))
    out: dict[str, Any] = {}
    for name, (recs, a, b) in splits.items():
        formats = ["all", *sorted({r.get("format", "chat") for r in recs})]
        out[name] = {}
        for f in formats:
            ix = [i for i, r in enumerate(recs) if f == "all" or r.get("format", "chat") == f]
            y = [bool(recs[i]["correct"]) for i in ix]
            with_att = [b[i] for i in ix]
            logits = [a[i] for i in ix]
            out[name][f] = {
                "n": len(ix),
                "auroc_logits": auroc(logits, y),
                "auroc_with_attention": auroc(with_att, y),
                "difference": paired_bootstrap(auroc, with_att, logits, y, n_boot),  # type: ignore[arg-type]
            }
    return out


def refeaturized(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The records with span and features recomputed from their ``signals`` (``--signals``)
    by the current ``confidence.py``: new features without generating again. The items'
    kinds and options come from the result's CSV."""
    from ..answers import parse_options
    from ..confidence import TokenSignal, answer_span, features
    from .harness import load_items

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
        feats = features(r["text"], signals, span)
        out.append({**r, "answer_span": span, "features": feats})
    return out


def _load_records(paths: Sequence[str], mode: str) -> list[dict[str, Any]]:
    import json
    from pathlib import Path

    out = []
    for p in paths:
        try:
            recs = refeaturized(json.loads(Path(p).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{p} is not an evaluation result: {err}") from err
        out += [r for r in recs if r["mode"] == mode and "features" in r]
    if not out:
        raise ValueError(f"no {mode} records with features in {', '.join(paths)}")
    return out


def rescored(result: dict[str, Any], model: ConfidenceModel) -> dict[str, Any]:
    """An evaluation result with every record's confidence from ``model`` and the summary
    recomputed (the accuracy figures are unchanged)."""
    from .stats import summarize

    records = [
        dict(r, confidence=model(r["features"], r.get("format", "chat"))) for r in result["records"]
    ]
    for r in records:
        r["confidence"] = None if r["confidence"] is None else round(r["confidence"], 6)
    run = dict(result["run"], confidence_map=model.meta)
    return {**result, "run": run, "summary": summarize(records, run["modes"]), "records": records}


def compare_sets(dev: Sequence[dict[str, Any]], sets: dict[str, Sequence[str]]) -> dict[str, Any]:
    """Out-of-fold dev figures of several feature sets, on the answers all of them can score."""
    every = sorted({f for fs in sets.values() for f in fs})
    recs = usable(dev, every)
    return {name: scores_report(out_of_fold(recs, fs), recs) for name, fs in sets.items()}


def main(argv: Sequence[str] | None = None) -> int:
    """``calibrate confidence DEV.json [...] [--test TEST.json]``: fit, write, report."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from ..confidence import CONFIDENCE_DIR

    p = argparse.ArgumentParser(
        prog="python -m mlx_entropix.eval.calibrate confidence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dev", nargs="+", help="benchmarks/eval.py result JSON(s) of the dev split")
    p.add_argument("--test", nargs="*", default=[], help="result JSON(s) to report on (test)")
    p.add_argument("--mode", default="greedy", help="whose answers (default greedy)")
    p.add_argument("--features", default=",".join(SHIPPED_FEATURES), help="comma-separated")
    p.add_argument("--l2", type=float, default=L2, help=f"ridge strength (default {L2})")
    p.add_argument("--out", help="map JSON to write (default: configs/confidence/<model>.json)")
    p.add_argument("--report", help="also write the fit report JSON here")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples (attention test)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="write each --test JSON again as <stem>.confidence.json with the new map's "
        "confidence (redraw its report: benchmarks/eval.py <stem>.confidence.json)",
    )
    args = p.parse_args(argv)
    features = [f.strip() for f in args.features.split(",") if f.strip()]
    try:
        dev = _load_records(args.dev, args.mode)
        test = _load_records(args.test, args.mode) if args.test else []
        name = json.loads(Path(args.dev[0]).read_text())["run"].get("model", "model")
        n = len(usable(dev, features))
        meta = {"model": name, "features": features, "fitted_on": list(args.dev),
                "answers": n, "l2": args.l2, "mode": args.mode}  # fmt: skip
        model = fit_model(usable(dev, features), features, args.l2, meta)
    except (ValueError, KeyError) as err:
        print(f"calibrate confidence: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else CONFIDENCE_DIR / f"{name.split()[0].lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model.to_json())
    report: dict[str, Any] = {
        "features": features,
        "feature sets, dev out-of-fold": compare_sets(
            dev,
            {
                "mean_logprob": ["mean_logprob"],
                "first_margin": ["first_margin"],
                "shipped": features,
                "span logits": LOGIT_FEATURES,
                "span + whole-generation logits": LOGITS_ONLY,
                "span logits + attention": (*LOGIT_FEATURES, *ATTENTION_FEATURES),
            },
        ),  # fmt: skip
        "dev (5-fold out-of-fold)": scores_report(
            out_of_fold(usable(dev, features), features), usable(dev, features)
        ),
    }
    if test:
        report["test (fitted on dev)"] = scores_report(predict(model, test), test)
    report["attention"] = attention_test(dev, test, LOGITS_ONLY, args.boot)
    print(json.dumps(report, indent=1))
    print(f"wrote {out}")
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=1) + "\n")
    for path in args.test if args.rescore else ():
        target = Path(path).with_suffix(".confidence.json")
        target.write_text(json.dumps(rescored(json.loads(Path(path).read_text()), model),
                                     indent=1, ensure_ascii=False) + "\n")  # fmt: skip
        print(f"wrote {target}")
    return 0
