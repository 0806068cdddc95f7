"""``calibrate confidence``: fit the answer-confidence map on dev results, write it, and
report dev and test figures, the candidates compared and the attention test.

    uv run benchmarks/eval.py data/eval/dev.csv --modes greedy --signals --out dev
    uv run python -m mlx_entropix.eval.calibrate confidence dev.json ... --select \\
        --test core.json --report benchmarks/results/confidence.md --rescore

Each format's map is chosen by leave-one-category-out figures on dev (``confidence_select.py``;
``--select`` is the only way now and may be left out; the earlier manual choice of features
made maps that learnt dev's kinds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..engine.confidence import AGREEMENT_SUFFIX, CONFIDENCE_DIR, ConfidenceModel
from .confidence_fit import fmt_of, predict, refeaturized, rescored, scores_report
from .confidence_select import attention_test, bootstrap, fit_chosen, held_out, select, with_format
from .confidence_stats import ece_floor


def _load_records(paths: Sequence[str], mode: str) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            recs = refeaturized(json.loads(Path(p).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{p} is not an evaluation result: {err}") from err
        out += [r for r in recs if r["mode"] == mode and "features" in r]
    if not out:
        raise ValueError(f"no {mode} records with features in {', '.join(paths)}")
    return out


def _interval(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{ci[0]:.2f}, {ci[1]:.2f}]"


def selection_markdown(report: dict[str, Any], top: int = 12) -> str:
    """The report as markdown: the candidates, the chosen map with intervals on dev (leave one
    category out) and test, the attention test on the chosen map (AUROC without and with the
    attention features, their difference with its paired bootstrap interval)."""
    chosen = report["chosen"]
    lines = ["Chosen (dev, leave one category out): "
             + "; ".join(f"{k}: {v}" for k, v in chosen.items())
             + f"; check cap: {report.get('check cap') or 'none'}", ""]  # fmt: skip
    head = "| {} | answers | AUROC | within-category AUROC | ECE | top half % | all % |"
    for fmt in chosen:
        lines += [head.format(f"{fmt}: candidate (dev, leave one category out)"),
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        rows = [(n, r[fmt]) for n, r in report["candidates"].items() if fmt in r]
        rows = [(n, b) for n, b in rows if b["auroc"] is not None]
        rows.sort(key=lambda nb: -(nb[1]["auroc"] + (nb[1]["within_category_auroc"] or 0)))
        for n, b in rows[:top] + [nb for nb in rows[top:] if nb[0] == chosen[fmt]]:
            name = f"**{n}**" if n == chosen[fmt] else n
            lines.append(
                f"| {name} | {b['n']} | {b['auroc']:.3f} | {b['within_category_auroc'] or 0:.3f} "
                f"| {b['ece']:.3f} | {100 * b['top_half_accuracy']:.1f} "
                f"| {100 * b['accuracy']:.1f} |"
            )
        lines.append("")
    lines += ["| chosen map [95% bootstrap] | format | answers | AUROC | within-category AUROC "
              "| ECE (floor) | top half % | all % |", "|---" * 8 + "|"]  # fmt: skip
    for split in ("dev (leave one category out)", "dev, no cap", "test (fitted on dev)",
                  "test, no cap"):  # fmt: skip
        for fmt, b in report.get(split, {}).items():
            ci = b.get("ci95") or {}
            lines.append(
                f"| {split} | {fmt} | {b['n']} | {b['auroc']:.3f}{_interval(ci.get('auroc'))} "
                f"| {b['within_category_auroc'] or 0:.3f}"
                f"{_interval(ci.get('within_category_auroc'))} "
                f"| {b['ece']:.3f}{_interval(ci.get('ece'))} ({b.get('ece_floor') or 0:.3f}) "
                f"| {100 * b['top_half_accuracy']:.1f} (gain{_interval(ci.get('gain'))}) "
                f"| {100 * b['accuracy']:.1f} |"
            )
    lines += ["", "| attention test | format | answers | AUROC without attention | AUROC with "
              "attention | difference [95% paired bootstrap] |", "|---" * 6 + "|"]  # fmt: skip
    for split, by_format in report["attention"].items():
        for fmt, b in by_format.items():
            d = b["difference"]
            ci = "-" if d["ci95"] is None else f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            diff = "-" if d["diff"] is None else f"{d['diff']:+.3f}"
            aurocs = (
                "-" if x is None else f"{x:.3f}"
                for x in (b["auroc_logits"], b["auroc_with_attention"])
            )
            lines.append(f"| {split} | {fmt} | {b['n']} | {' | '.join(aurocs)} | {diff} {ci} |")
    return "\n".join(lines) + "\n"


def _figures(conf: list[float | None], recs: list[dict[str, Any]], n_boot: int) -> dict[str, Any]:
    """``scores_report`` per format and overall, each with bootstrap intervals."""
    out = scores_report(conf, recs)
    for fmt in out:
        ix = [i for i, r in enumerate(recs) if fmt == "all" or fmt_of(r) == fmt]
        out[fmt]["ci95"] = bootstrap([conf[i] for i in ix], [recs[i] for i in ix], n_boot)
        out[fmt]["ece_floor"] = ece_floor([c for i in ix if (c := conf[i]) is not None])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``calibrate confidence DEV.json [...] [--test TEST.json]``: choose, fit, write, report."""
    p = argparse.ArgumentParser(
        prog="python -m mlx_entropix.eval.calibrate confidence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dev", nargs="+", help="benchmarks/eval.py result JSON(s) of the dev split")
    p.add_argument("--test", nargs="*", default=[], help="result JSON(s) to report on (test)")
    p.add_argument("--mode", default="greedy", help="whose answers (default greedy)")
    p.add_argument("--select", action="store_true", help="(the default; kept for old commands)")
    p.add_argument("--out", help="map JSON to write (default: configs/confidence/<model>.json)")
    p.add_argument("--report", help="also write the fit report here (.md: tables, else JSON)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples (attention test)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="write each --test JSON again as <stem>.confidence.json with the new map's "
        "confidence (redraw its report: benchmarks/eval.py <stem>.confidence.json)",
    )
    args = p.parse_args(argv)
    try:
        dev = _load_records(args.dev, args.mode)
        test = _load_records(args.test, args.mode) if args.test else []
        first = json.loads(Path(args.dev[0]).read_text(encoding="utf-8"))
        name = first["run"].get("model", "model")
        chosen, results, caps = select(dev)
        meta = {"model": name, "fitted_on": list(args.dev), "answers": len(dev),
                "mode": args.mode, "selected_by": "leave one category out on dev"}  # fmt: skip
        model = fit_chosen(dev, chosen, meta, caps)
    except (ValueError, KeyError) as err:
        print(f"calibrate confidence: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else CONFIDENCE_DIR / f"{name.split()[0].lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # maps fitted elsewhere (on sampled rows, benchmarks/confidence_sc.py) stay
        kept = {k: m for k, m in ConfidenceModel.from_file(out).maps.items()
                if k.endswith(AGREEMENT_SUFFIX) and k not in model.maps}  # fmt: skip
        model.maps.update(kept)
        for k in kept:
            print(f"calibrate confidence: kept {k!r} from {out} (refit: confidence_sc.py)")
    out.write_text(model.to_json(), encoding="utf-8")
    n_boot = min(args.boot, 1000)
    report: dict[str, Any] = {
        "chosen": {f: c.name for f, c in chosen.items()},
        "check cap": model.failed_check,
        "candidates": results,
        "dev (leave one category out)": _figures(*held_out(dev, chosen, caps)[::-1], n_boot),
    }
    if caps:
        report["dev, no cap"] = _figures(*held_out(dev, chosen)[::-1], n_boot)
    if test:
        tests = [r for r in with_format(test) if fmt_of(r) in chosen]
        report["test (fitted on dev)"] = _figures(predict(model, tests), tests, n_boot)
        if caps:
            plain = fit_chosen(dev, chosen, meta)  # the same maps fitted on every answer
            report["test, no cap"] = _figures(predict(plain, tests), tests, n_boot)
    report["attention"] = attention_test(dev, test, chosen, caps, args.boot)
    print(json.dumps({k: v for k, v in report.items() if k != "candidates"}, indent=1))
    print(f"wrote {out}")
    if args.report:  # Markdown for a .md path, else JSON
        md = args.report.endswith(".md")
        text = selection_markdown(report) if md else json.dumps(report, indent=1) + "\n"
        Path(args.report).write_text(text, encoding="utf-8")
    for path in args.test if args.rescore else ():  # each scored again by the new map
        target = Path(path).with_suffix(".confidence.json")
        result = rescored(json.loads(Path(path).read_text(encoding="utf-8")), model)
        target.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {target}")
    return 0
