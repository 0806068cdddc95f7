"""Fork mode's confidence: the shipped map's confidence and the agreement of the fork's
branches (``confidence.branch_agreement``), fitted on dev's fork answers and chosen the way
``confidence_select.py`` chooses (leave one category out; AUROC + within-category AUROC, the
fewest features among practically equal candidates, then ECE).

    uv run benchmarks/eval.py DEV.csv --modes fork --signals --out fork_dev
    uv run python -m mlx_entropix.eval.confidence_fork fork_dev.json [--test fork_test.json] \\
        --report benchmarks/results/confidence_fork.md [--write]

Every candidate is a logistic map of ``base_logit`` (the logit of the shipped per-format map's
confidence, arithmetic cap included) and none, one or both agreement features, per format or
pooled; "shipped" is the per-format map's confidence unchanged. The comparison that decides
whether agreement helps is paired: the chosen map against the shipped confidence on the same
fork answers (bootstrap over answers). ``--write`` adds the chosen fork maps to the model's
config when a chosen map uses agreement (a map of ``base_logit`` alone is a recalibration, not
agreement: nothing is written). Refitting the per-format maps (``calibrate confidence``)
changes ``base_logit``: refit the fork maps after it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.confidence import (
    BASE_FEATURE,
    FORK_FEATURES,
    FORMAT_FEATURE,
    ConfidenceModel,
    fork_agreement,
    logit,
)
from .confidence_fit import refeaturized, scores_report, usable
from .confidence_select import (
    Candidate,
    bootstrap,
    choose,
    fit_candidate,
    leave_category_out,
    with_format,
)
from .confidence_stats import auroc, ece, paired_bootstrap
from .harness import load_items

SHIPPED = "shipped (per-format map)"
SETS: dict[str, tuple[str, ...]] = {
    "base (recal)": (BASE_FEATURE,),
    "base + share": (BASE_FEATURE, "fork_agree_share"),
    "base + score share": (BASE_FEATURE, "fork_agree_score"),
    "base + both": (BASE_FEATURE, *FORK_FEATURES),
    "share only": ("fork_agree_share",),
}


def candidates() -> list[Candidate]:
    """Each set as a logistic map (l2 1), per format and pooled (format as a feature)."""
    out = []
    for name, fs in SETS.items():
        out += [Candidate(name, fs),
                Candidate(f"{name} pooled", (*fs, FORMAT_FEATURE), pooled=True)]  # fmt: skip
    return out


def fork_records(
    result: dict[str, Any], model: ConfidenceModel, kinds: dict[int, str | None] | None = None
) -> list[dict[str, Any]]:
    """A fork run's answers (``--signals``) with the features a fork map sees: the branches'
    agreement and ``base_logit`` from ``model``'s per-format map (``confidence`` becomes that
    map's, the shipped confidence of a fork's answer without a fork map)."""
    if kinds is None:  # the items' answer kinds: which fork read its branches' answers
        kinds = {i.index: i.kind for i in load_items(result["run"]["csv"])}
    out = []
    for r in refeaturized(result):
        if r["mode"] != "fork" or not r.get("branches") or "features" not in r:
            continue
        bs = r["branches"]
        kept = next((i for i, b in enumerate(bs) if b["kept"]), -1)
        fork = {"trigger": "first", "answer_kind": kinds[r["item"]], "branches": bs, "kept": kept}
        agree = fork_agreement(fork) or dict.fromkeys(FORK_FEATURES)
        base = model.base(r["features"], r.get("format", "chat"))
        if base is None:
            continue
        out.append({**r, "features": {**r["features"], **agree, BASE_FEATURE: logit(base)},
                    "confidence": base})  # fmt: skip
    return out


def _capped(p: float | None, r: dict[str, Any], model: ConfidenceModel) -> float | None:
    return model._cap(p, r["features"], r.get("format", "chat"))


def held_out(
    recs: Sequence[dict[str, Any]], c: Candidate, model: ConfidenceModel
) -> list[float | None]:
    """Each answer scored by the candidate fitted on the other categories (of its format, or
    both when pooled), capped as the model caps."""
    recs = with_format(recs)
    if c.pooled:
        preds = leave_category_out(recs, c)
    else:
        preds = [None] * len(recs)
        for fmt in {r.get("format", "chat") for r in recs}:
            ix = [i for i, r in enumerate(recs) if r.get("format", "chat") == fmt]
            for i, p in zip(ix, leave_category_out([recs[i] for i in ix], c), strict=True):
                preds[i] = p
    # an answer without the candidate's features (no agreement) keeps the shipped confidence
    return [r["confidence"] if p is None else _capped(p, r, model)
            for p, r in zip(preds, recs, strict=True)]  # fmt: skip


def select(
    dev: Sequence[dict[str, Any]], model: ConfidenceModel
) -> tuple[dict[str, Candidate], dict[str, dict[str, Any]], dict[str, list[float | None]]]:
    """Every candidate's leave-one-category-out figures and predictions on the dev answers
    that have every feature, and the choice per format (``confidence_select.choose``)."""
    cands = candidates()
    preds = {c.name: held_out(dev, c, model) for c in cands}
    results = {n: scores_report(p, dev) for n, p in preds.items()}
    formats = sorted({r.get("format", "chat") for r in dev})
    return {f: choose(results, cands, f) for f in formats}, results, preds


def fit_fork_maps(dev: Sequence[dict[str, Any]], chosen: dict[str, Candidate]) -> dict[str, Any]:
    """Each format's chosen candidate fitted on all of dev (its format's answers, or both)."""
    recs = with_format(dev)
    out = {}
    for fmt, c in chosen.items():
        rs = recs if c.pooled else [r for r in recs if r.get("format", "chat") == fmt]
        out[fmt] = fit_candidate(usable(rs, c.features), c)
    return out


def compare(
    new: Sequence[float | None],
    old: Sequence[float | None],
    recs: Sequence[dict[str, Any]],
    n_boot: int,
) -> dict[str, Any]:
    """Per format and overall: n, both AUROCs and ECEs, and the paired bootstrap interval of
    the AUROC and ECE differences (new minus old)."""
    out = {}
    for fmt in ("all", *sorted({r.get("format", "chat") for r in recs})):
        ix = [i for i, r in enumerate(recs) if (fmt == "all" or r.get("format", "chat") == fmt)
              and new[i] is not None and old[i] is not None]  # fmt: skip
        a, b = [new[i] for i in ix], [old[i] for i in ix]
        y = [bool(recs[i]["correct"]) for i in ix]
        out[fmt] = {
            "n": len(ix),
            "auroc": [auroc(a, y), auroc(b, y)],  # type: ignore[arg-type]
            "ece": [ece(a, y), ece(b, y)],  # type: ignore[arg-type]
            "auroc_diff": paired_bootstrap(auroc, a, b, y, n_boot),  # type: ignore[arg-type]
            "ece_diff": paired_bootstrap(ece, a, b, y, n_boot),  # type: ignore[arg-type]
        }
    return out


def _figures(conf: Sequence[float | None], recs: Sequence[dict[str, Any]], n_boot: int) -> dict:
    out = scores_report(conf, recs)
    for fmt in out:
        ix = [i for i, r in enumerate(recs) if fmt == "all" or r.get("format", "chat") == fmt]
        out[fmt]["ci95"] = bootstrap([conf[i] for i in ix], [recs[i] for i in ix], n_boot)
    return out


def report(
    dev_result: dict[str, Any],
    model: ConfidenceModel,
    test_result: dict[str, Any] | None = None,
    n_boot: int = 1000,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The selection on dev, the chosen maps' figures against the shipped confidence (dev
    leave one category out; test fitted on dev), and the fitted fork maps."""
    dev = fork_records(dev_result, model)
    chosen, results, preds = select(dev, model)
    maps = fit_fork_maps(dev, chosen)
    shipped = [r["confidence"] for r in dev]
    mine = [None] * len(dev)
    for fmt, c in chosen.items():
        for i, r in enumerate(dev):
            if r.get("format", "chat") == fmt:
                mine[i] = preds[c.name][i]
    out: dict[str, Any] = {
        "dev answers": len(dev),
        "dev categories": sorted({r["category"] for r in dev}),
        "chosen": {f: c.name for f, c in chosen.items()},
        "uses agreement": {
            f: bool(set(c.features) & set(FORK_FEATURES)) for f, c in chosen.items()
        },  # fmt: skip
        "candidates": {SHIPPED: scores_report(shipped, dev), **results},
        "dev (leave one category out)": {
            "chosen": _figures(mine, dev, n_boot),
            "shipped": _figures(shipped, dev, n_boot),
            "chosen vs shipped": compare(mine, shipped, dev, n_boot),
        },
        "agreement on dev": agreement_table(dev),
    }
    if test_result is not None:
        test = fork_records(test_result, model)
        forked = replace(model, fork=maps)
        new = [forked(r["features"], r.get("format", "chat")) for r in test]
        old = [r["confidence"] for r in test]
        out["test (fitted on dev)"] = {
            "chosen": _figures(new, test, n_boot),
            "shipped": _figures(old, test, n_boot),
            "chosen vs shipped": compare(new, old, test, n_boot),
            "agreement": agreement_table(test),
        }
    return out, maps


def agreement_table(recs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy of the fork's answers by share of branches that agree with the kept one."""
    rows: dict[float, list[bool]] = {}
    for r in recs:
        if (share := r["features"]["fork_agree_share"]) is not None:
            rows.setdefault(round(share, 3), []).append(bool(r["correct"]))
    return [{"share": s, "n": len(v), "accuracy": sum(v) / len(v)} for s, v in sorted(rows.items())]


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def markdown(rep: dict[str, Any]) -> str:
    """The report as tables: candidates, chosen vs shipped, agreement by share."""
    lines = [
        "# Fork mode's confidence: the branches' agreement as a feature",
        "",
        f"Dev: {rep['dev answers']} fork answers of {len(rep['dev categories'])} kinds of "
        "question, each scored by a map fitted on the other kinds (leave one category out). "
        f"Chosen: {', '.join(f'{k}: {v}' for k, v in rep['chosen'].items())}.",
        "",
        "| candidate (dev, leave one category out) | format | AUROC | within-category AUROC "
        "| ECE |",
        "|---|---|---|---|---|",
    ]
    for name, by in rep["candidates"].items():
        for fmt in ("chat", "raw"):
            if fmt in by:
                b = by[fmt]
                lines.append(f"| {name} | {fmt} | {_f(b['auroc'])} "
                             f"| {_f(b['within_category_auroc'])} | {_f(b['ece'])} |")  # fmt: skip
    splits = ["dev (leave one category out)", "test (fitted on dev)"]
    lines += ["", "| [95% bootstrap] | split | format | answers | AUROC | within-category AUROC "
              "| ECE | most confident half vs all % |", "|---" * 8 + "|"]  # fmt: skip
    for split in [s for s in splits if s in rep]:
        for who in ("shipped", "chosen"):
            for fmt, b in rep[split][who].items():
                ci = b.get("ci95") or {}
                top = "-" if b["top_half_accuracy"] is None else (
                    f"{100 * b['top_half_accuracy']:.1f} vs {100 * b['accuracy']:.1f}")  # fmt: skip
                lines.append(
                    f"| {who} | {split} | {fmt} | {b['n']} | {_f(b['auroc'])}{_ci(ci.get('auroc'))}"
                    f" | {_f(b['within_category_auroc'])}{_ci(ci.get('within_category_auroc'))}"
                    f" | {_f(b['ece'])}{_ci(ci.get('ece'))} | {top} |"
                )
    lines += ["", "| chosen minus shipped [95% paired bootstrap] | split | format | answers "
              "| AUROC | ECE |", "|---|---|---|---|---|---|"]  # fmt: skip
    for split in [s for s in splits if s in rep]:
        for fmt, b in rep[split]["chosen vs shipped"].items():
            cells = []
            for k in ("auroc_diff", "ece_diff"):
                d, ci = b[k], b[k]["ci95"]
                cells.append("-" if d["diff"] is None else
                             f"{d['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")  # fmt: skip
            lines.append(f"| | {split} | {fmt} | {b['n']} | {cells[0]} | {cells[1]} |")
    lines += ["", "| branches agreeing with the kept answer | split | answers | accuracy % |",
              "|---|---|---|---|"]  # fmt: skip
    tables = [("dev", rep["agreement on dev"])]
    if "test (fitted on dev)" in rep:
        tables.append(("test", rep["test (fitted on dev)"]["agreement"]))
    for split, rows in tables:
        for row in rows:
            lines.append(f"| {row['share']:.2f} | {split} | {row['n']} "
                         f"| {100 * row['accuracy']:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from ..engine.confidence import model_path, shipped_model

    p = argparse.ArgumentParser(prog="python -m mlx_entropix.eval.confidence_fork")
    p.add_argument("dev", help="a fork run's result JSON (benchmarks/eval.py --signals)")
    p.add_argument("--test", help="the test split's fork run (report once, after choosing)")
    p.add_argument("--report", help="markdown path (a .json beside it)")
    p.add_argument("--write", action="store_true",
                   help="add the fork maps that use agreement to the model's config")  # fmt: skip
    p.add_argument("--boot", type=int, default=1000)
    args = p.parse_args(argv)
    dev_result = json.loads(Path(args.dev).read_text())
    name = dev_result["run"].get("model", "model")
    model = shipped_model(name)
    if model is None:
        p.error(f"no confidence map shipped for {name}")
    base = replace(model, fork={})
    test_result = json.loads(Path(args.test).read_text()) if args.test else None
    rep, maps = report(dev_result, base, test_result, args.boot)
    print(json.dumps({k: v for k, v in rep.items() if k != "candidates"}, indent=1)[:6000])
    if args.report:
        Path(args.report).write_text(markdown(rep))
        Path(args.report).with_suffix(".json").write_text(json.dumps(rep, indent=1) + "\n")
    if args.write:
        keep = {f: m for f, m in maps.items() if rep["uses agreement"][f]}
        path = model_path(name)
        if path is None or not keep:
            print("nothing written: no config, or no chosen map uses agreement")
            return 0
        meta = {**base.meta, "fork": {"fitted_on": [args.dev], "answers": rep["dev answers"],
                "chosen": {f: rep["chosen"][f] for f in keep},
                "selected_by": "leave one category out on dev fork answers"}}  # fmt: skip
        path.write_text(replace(base, fork=keep, meta=meta).to_json())
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
