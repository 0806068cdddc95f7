"""Reports of the answers' confidence: a markdown table and a PNG (reliability diagram and
risk-coverage curve per mode)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def confidence_markdown(result: dict[str, Any]) -> str:
    """Per mode and format: AUROC, within-category AUROC, ECE, top-half vs all accuracy."""
    rows = []
    for mode, s in result["summary"].items():
        c = s.get("confidence")
        if not c:
            continue
        blocks = (
            [("all", c), *c["per_format"].items()] if len(c["per_format"]) > 1 else [("all", c)]
        )
        for fmt, b in blocks:
            within = c["within_category_auroc"] if fmt == "all" else _within(c, result, mode, fmt)
            rows.append(
                f"| {mode} | {fmt} | {b['n']} | {_f(b['auroc'])} | {_f(within)} | {_f(b['ece'])} "
                f"| {_f(b['mean_confidence'], True)} | {_f(b['accuracy'], True)} "
                f"| {_f(b['top_half_accuracy'], True)} |"
            )
    if not rows:
        return ""
    head = [
        "",
        "Answer confidence (`confidence.py`; AUROC for right vs wrong, ECE over 10 bins):",
        "",
        "| mode | format | answers | AUROC | within-category AUROC (mean) | ECE "
        "| mean confidence % | accuracy % | most confident half, accuracy % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def _within(c: dict[str, Any], result: dict[str, Any], mode: str, fmt: str) -> float | None:
    """Mean AUROC over the categories of one format (categories hold one format each here)."""
    cats = {
        r["category"] for r in result["records"] if r["mode"] == mode and r.get("format") == fmt
    }
    vals = [
        b["auroc"] for k, b in c["per_category"].items() if k in cats and b["auroc"] is not None
    ]
    return sum(vals) / len(vals) if vals else None


def confidence_plot(result: dict[str, Any], path: str | Path) -> bool:
    """Reliability diagram and risk-coverage curve per mode; False if no mode has confidence."""
    modes = [m for m, s in result["summary"].items() if s.get("confidence")]
    if not modes:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    colours = {"greedy": "#666666", "normal": "#56B4E9", "entropix": "#0072B2", "fork": "#E69F00"}
    ax1.plot([0, 1], [0, 1], ls=":", color="#999", lw=1)
    for m in modes:
        c = result["summary"][m]["confidence"]
        rel = c["reliability"]
        ax1.plot(
            [r["confidence"] for r in rel],
            [r["accuracy"] for r in rel],
            marker="o",
            color=colours.get(m, "#333"),
            label=f"{m}: ECE {c['ece']:.3f}",
        )
        for r in rel:
            ax1.annotate(str(r["count"]), (r["confidence"], r["accuracy"]), fontsize=7,
                         xytext=(3, -9), textcoords="offset points")  # fmt: skip
        cov = c["risk_coverage"]
        ax2.plot(
            [100 * a for a, _ in cov],
            [100 * b for _, b in cov],
            color=colours.get(m, "#333"),
            label=f"{m}: AUROC {c['auroc']:.3f}" if c["auroc"] is not None else m,
        )
        ax2.axhline(100 * c["accuracy"], ls=":", color=colours.get(m, "#333"), lw=1)
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_xlabel("confidence (mean in bin)")
    ax1.set_ylabel("accuracy in bin (label: answers)")
    ax1.set_title("Reliability diagram (10 bins)")
    ax1.legend(fontsize=8, loc="upper left")
    ax2.set_xlim(0, 100)
    ax2.set_ylim(0, 101)
    ax2.set_xlabel("coverage: % of answers kept, most confident first")
    ax2.set_ylabel("accuracy of the answers kept %")
    ax2.set_title("Risk-coverage (dotted: accuracy of all)")
    ax2.legend(fontsize=8, loc="lower left")
    meta = result["run"]
    fig.suptitle(f"{Path(meta['csv']).name}: answer confidence, {meta['model']}", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
