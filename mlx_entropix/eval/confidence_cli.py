"""``calibrate confidence``: fit the answer-confidence map on dev results, write it, and
report dev and test figures, the feature sets compared and the attention test.

    uv run benchmarks/eval.py data/eval/dev.csv --modes greedy --signals --out dev
    uv run python -m mlx_entropix.eval.calibrate confidence dev.json --test core.json \\
        --report benchmarks/results/confidence.md --rescore
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..engine.confidence import ATTENTION_FEATURES, LOGIT_FEATURES
from .confidence_fit import (
    L2,
    LOGITS_ONLY,
    SHIPPED_FEATURES,
    SHIPPED_L2,
    Sets,
    all_features,
    attention_test,
    compare_sets,
    fit_model,
    out_of_fold,
    predict,
    refeaturized,
    rescored,
    scores_report,
    usable,
)


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


def report_markdown(report: dict[str, Any]) -> str:
    """The fit report as markdown tables (``--report X.md``)."""

    def f(x: float | None, pct: bool = False) -> str:
        return "-" if x is None else f"{100 * x:.1f}" if pct else f"{x:.3f}"

    head = "| {} | format | answers | AUROC | within-category AUROC | ECE | top half % | all % |"
    shipped = "; ".join(f"{k}: {', '.join(v)}" for k, v in report["features"].items())
    lines = [f"Shipped features: {shipped}", ""]

    def table(title: str, blocks: dict[str, dict[str, Any]]) -> None:
        lines.extend([head.format(title), "|---|---|---|---|---|---|---|---|"])
        for name, by_format in blocks.items():
            for fmt, b in by_format.items():
                lines.append(
                    f"| {name} | {fmt} | {b['n']} | {f(b['auroc'])} "
                    f"| {f(b['within_category_auroc'])} | {f(b['ece'])} "
                    f"| {f(b['top_half_accuracy'], True)} | {f(b['accuracy'], True)} |"
                )
        lines.append("")

    table("feature set (dev, 5-fold out-of-fold)", report["feature sets, dev out-of-fold"])
    table(
        "feature set (dev, leave one category out)",
        report["feature sets, dev leave-one-category-out"],
    )
    table("shipped map", {k: v for k, v in report.items() if k.startswith(("dev (", "test ("))})
    lines += ["| attention test | format | answers | AUROC logits only | AUROC with attention "
              "| difference [95% paired bootstrap] |", "|---|---|---|---|---|---|"]  # fmt: skip
    for split, by_format in report["attention"].items():
        for fmt, b in by_format.items():
            d = b["difference"]
            ci = "-" if d["ci95"] is None else f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
            diff = "-" if d["diff"] is None else f"{d['diff']:+.3f}"
            lines.append(
                f"| {split} | {fmt} | {b['n']} | {f(b['auroc_logits'])} "
                f"| {f(b['auroc_with_attention'])} | {diff} {ci} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``calibrate confidence DEV.json [...] [--test TEST.json]``: fit, write, report."""
    import argparse
    import json
    import sys
    from pathlib import Path

    from ..engine.confidence import CONFIDENCE_DIR

    p = argparse.ArgumentParser(
        prog="python -m mlx_entropix.eval.calibrate confidence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dev", nargs="+", help="benchmarks/eval.py result JSON(s) of the dev split")
    p.add_argument("--test", nargs="*", default=[], help="result JSON(s) to report on (test)")
    p.add_argument("--mode", default="greedy", help="whose answers (default greedy)")
    for fmt in ("chat", "raw"):
        p.add_argument(
            f"--{fmt}-features",
            default=",".join(SHIPPED_FEATURES[fmt]),
            help=f"comma-separated (default: {','.join(SHIPPED_FEATURES[fmt])})",
        )
        p.add_argument(f"--{fmt}-l2", type=float, default=SHIPPED_L2[fmt],
                       help=f"ridge strength (default {SHIPPED_L2[fmt]})")  # fmt: skip
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
    features = {
        fmt: [f.strip() for f in getattr(args, f"{fmt}_features").split(",") if f.strip()]
        for fmt in ("chat", "raw")
    }
    l2 = {"chat": args.chat_l2, "raw": args.raw_l2}
    try:
        dev = usable(_load_records(args.dev, args.mode), all_features(features))
        test = _load_records(args.test, args.mode) if args.test else []
        name = json.loads(Path(args.dev[0]).read_text())["run"].get("model", "model")
        meta = {"model": name, "fitted_on": list(args.dev), "answers": len(dev), "l2": l2,
                "mode": args.mode}  # fmt: skip
        model = fit_model(dev, features, l2, meta)
    except (ValueError, KeyError) as err:
        print(f"calibrate confidence: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else CONFIDENCE_DIR / f"{name.split()[0].lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(model.to_json())
    sets: Sets = {
        "mean_logprob": (["mean_logprob"], L2),
        "span logits": (LOGIT_FEATURES, L2),
        "logits (span + whole generation)": (LOGITS_ONLY, L2),
        "logits + attention": ((*LOGITS_ONLY, *ATTENTION_FEATURES), L2),
        "shipped": (features, l2),
    }
    report: dict[str, Any] = {
        "features": features,
        "feature sets, dev out-of-fold": compare_sets(dev, sets),
        "feature sets, dev leave-one-category-out": compare_sets(dev, sets, loco=True),
        "dev (5-fold out-of-fold)": scores_report(out_of_fold(dev, features, l2=l2), dev),
    }
    if test:
        report["test (fitted on dev)"] = scores_report(predict(model, test), test)
    report["attention"] = attention_test(dev, test, LOGITS_ONLY, args.boot)
    print(json.dumps(report, indent=1))
    print(f"wrote {out}")
    if args.report:
        md = args.report.endswith(".md")
        text = report_markdown(report) if md else json.dumps(report, indent=1) + "\n"
        Path(args.report).write_text(text)
    for path in args.test if args.rescore else ():
        target = Path(path).with_suffix(".confidence.json")
        target.write_text(json.dumps(rescored(json.loads(Path(path).read_text()), model),
                                     indent=1, ensure_ascii=False) + "\n")  # fmt: skip
        print(f"wrote {target}")
    return 0
