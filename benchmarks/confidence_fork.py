"""Fork mode's confidence: does the agreement of the fork's branches add to the answer
confidence? Measured on dev's fork answers the way ``confidence_select.py`` chooses (leave one
category out; AUROC + within-category AUROC, the fewest features among practically equal
candidates, then ECE), against the shipped confidence of the same answers.

    uv run benchmarks/eval.py DEV.csv --modes fork --signals --out fork_dev
    uv run benchmarks/confidence_fork.py fork_dev.json [--test fork_test.json] \
        --report benchmarks/results/confidence_fork.md

Agreement (``branch_agreement``): the share of branches whose answer is the kept one's, and
the share of the branches' summed scores theirs carry; only where the branches' answers are
read as a number, a choice or yes/no (``fork_agreement``). Every candidate is a logistic map
of ``base_logit`` (the logit of the shipped per-format map's confidence, check cap
included) and none, one or both agreement features, per format or pooled; answers without
agreement keep the shipped confidence. Two paired comparisons (bootstrap over answers): the
chosen maps against the shipped confidence, and base + share against base alone under the
same held-out fitting (what agreement itself adds). Result of 2026-12-04: it adds nothing on
dev (benchmarks/results/confidence_fork.md), so no fork map is shipped and the engine gives a
fork's answer the same confidence as any answer.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlx_entropix.engine.confidence import FORMAT_FEATURE, ConfidenceModel, Map
from mlx_entropix.eval.confidence_fit import refeaturized, scores_report, usable
from mlx_entropix.eval.confidence_select import (
    Candidate,
    _logit,
    bootstrap,
    choose,
    fit_candidate,
    leave_category_out,
    with_format,
)
from mlx_entropix.eval.confidence_stats import auroc, ece, paired_bootstrap
from mlx_entropix.eval.harness import load_items

# A fork's branches (``branch_agreement``) and the per-format map's confidence, as its logit:
# what a fork map sees.
FORK_FEATURES = ("fork_agree_share", "fork_agree_score")
BASE_FEATURE = "base_logit"
READERS = ("numeric", "choice", "yesno")  # answer kinds whose reader reads a short answer


def branch_agreement(
    answers: Sequence[str | None], scores: Sequence[float], kept: int
) -> dict[str, float | None]:
    """How much a fork's branches agree with the kept one: the share of branches whose answer
    is the kept branch's (a branch without an answer disagrees), and the share of the
    branches' summed scores theirs carry (None unless every score is >= 0 and some > 0: the
    margins are; a log-probability or entropy score is not a share). None for both when the
    kept branch has no answer."""
    if not answers or not 0 <= kept < len(answers) or answers[kept] is None:
        return dict.fromkeys(FORK_FEATURES)
    same = [a == answers[kept] for a in answers]
    total = sum(scores)
    ok = total > 0 and all(s >= 0 for s in scores)
    share = sum(s for s, m in zip(scores, same, strict=True) if m) / total if ok else None
    return {"fork_agree_share": sum(same) / len(same), "fork_agree_score": share}


def fork_agreement(fork: dict[str, Any] | None) -> dict[str, float | None] | None:
    """``branch_agreement`` of a fork (a ``ForkEvent``'s fields); None where it is not the
    feature measured here: no fork, a fork after the first token (an 'exploring' fork reads
    partial answers), or branches whose answer is their whole text (no answer kind, or
    ``exact``/``contains``: branches that start with different tokens rarely agree word for
    word)."""
    if fork is None or fork["trigger"] != "first" or fork["answer_kind"] not in READERS:
        return None
    bs = fork["branches"]
    return branch_agreement([b["answer"] for b in bs], [b["score"] for b in bs], fork["kept"])


def with_fork_map(
    model: ConfidenceModel, maps: dict[str, Map], feats: dict[str, Any], fmt: str
) -> float | None:
    """A fork answer's confidence under fork ``maps``: the format's map of the model's
    confidence (its logit) and the agreement, capped as the model caps (an answer whose own
    arithmetic fails); the model's confidence where the format has no map or the answer no
    agreement."""
    p = model(feats, fmt)
    m = maps.get(fmt)
    if p is None or m is None:
        return p
    q = m({**feats, BASE_FEATURE: _logit(p), FORMAT_FEATURE: float(fmt == "raw")})
    return p if q is None else model.capped(q, feats, fmt)


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
        base = model(r["features"], r.get("format", "chat"))
        if base is None:
            continue
        out.append({**r, "features": {**r["features"], **agree, BASE_FEATURE: _logit(base)},
                    "confidence": base})  # fmt: skip
    return out


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
    return [r["confidence"] if p is None
            else model.capped(p, r["features"], r.get("format", "chat"))
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
        # what agreement adds under the same fitting: base + share vs base alone, both held out
        "agreement vs base alone": compare(
            preds["base + share"], preds["base (recal)"], dev, n_boot
        ),  # fmt: skip
        "agreement on dev": agreement_table(dev),
        "agreement by category": agreement_table(dev, by_category=True),
    }
    if test_result is not None:
        test = fork_records(test_result, model)
        new = [with_fork_map(model, maps, r["features"], r.get("format", "chat")) for r in test]
        old = [r["confidence"] for r in test]
        out["test (fitted on dev)"] = {
            "chosen": _figures(new, test, n_boot),
            "shipped": _figures(old, test, n_boot),
            "chosen vs shipped": compare(new, old, test, n_boot),
            "agreement": agreement_table(test),
        }
    return out, maps


def agreement_table(
    recs: Sequence[dict[str, Any]], by_category: bool = False
) -> list[dict[str, Any]]:
    """Accuracy of the fork's answers by share of branches that agree with the kept one (and
    by category)."""
    rows: dict[tuple[str, float], list[bool]] = {}
    for r in recs:
        if (share := r["features"]["fork_agree_share"]) is not None:
            key = (r["category"] if by_category else "", round(share, 3))
            rows.setdefault(key, []).append(bool(r["correct"]))
    return [{"category": c, "share": s, "n": len(v), "accuracy": sum(v) / len(v)}
            for (c, s), v in sorted(rows.items())]  # fmt: skip


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
    lines += ["", "| difference [95% paired bootstrap] | split | format | answers "
              "| AUROC | ECE |", "|---|---|---|---|---|---|"]  # fmt: skip
    rows = [("chosen minus shipped", s, rep[s]["chosen vs shipped"]) for s in splits if s in rep]
    rows.append(("base + share minus base (recal)", splits[0], rep["agreement vs base alone"]))
    for who, split, by_fmt in rows:
        for fmt, b in by_fmt.items():
            cells = []
            for k in ("auroc_diff", "ece_diff"):
                d, ci = b[k], b[k]["ci95"]
                cells.append("-" if d["diff"] is None else
                             f"{d['diff']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]")  # fmt: skip
            lines.append(f"| {who} | {split} | {fmt} | {b['n']} | {cells[0]} | {cells[1]} |")
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

    from mlx_entropix.engine.confidence import shipped_model

    p = argparse.ArgumentParser(prog="benchmarks/confidence_fork.py")
    p.add_argument("dev", help="a fork run's result JSON (benchmarks/eval.py --signals)")
    p.add_argument("--test", help="the test split's fork run (report once, after choosing)")
    p.add_argument("--report", help="markdown path (a .json beside it)")
    p.add_argument("--boot", type=int, default=1000)
    args = p.parse_args(argv)
    dev_result = json.loads(Path(args.dev).read_text())
    name = dev_result["run"].get("model", "model")
    model = shipped_model(name)
    if model is None:
        p.error(f"no confidence map shipped for {name}")
    test_result = json.loads(Path(args.test).read_text()) if args.test else None
    rep, _ = report(dev_result, model, test_result, args.boot)
    print(markdown(rep))
    if args.report:
        Path(args.report).write_text(markdown(rep))
        Path(args.report).with_suffix(".json").write_text(json.dumps(rep, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
