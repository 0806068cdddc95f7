"""Reports of the answers' confidence: a markdown table and a PNG (reliability diagram and
risk-coverage curve per mode, and per prompt format when there are several)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def _blocks(c: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """All answers, then each prompt format when there are several."""
    return [("all", c), *c["per_format"].items()] if len(c["per_format"]) > 1 else [("all", c)]


def confidence_markdown(result: dict[str, Any]) -> str:
    """Per mode and format: AUROC, within-category AUROC, ECE, top-half vs all accuracy."""
    rows = []
    for mode, s in result["summary"].items():
        for fmt, b in _blocks(s["confidence"]) if s.get("confidence") else ():
            rows.append(
                f"| {mode} | {fmt} | {b['n']} | {_f(b['auroc'])} "
                f"| {_f(b['within_category_auroc'])} | {_f(b['ece'])} "
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


def confidence_plot(result: dict[str, Any], path: str | Path) -> bool:
    """Reliability diagram and risk-coverage curve; False if no mode has a confidence."""
    curves = [
        (m, fmt, b)
        for m, s in result["summary"].items()
        if s.get("confidence")
        for fmt, b in _blocks(s["confidence"])
    ]
    if not curves:
        return False
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    colours = {"greedy": "#666666", "normal": "#56B4E9", "entropix": "#0072B2", "fork": "#E69F00"}
    fmt_colours = {"chat": "#0072B2", "raw": "#D55E00"}
    ax1.plot([0, 1], [0, 1], ls=":", color="#999", lw=1)
    for m, fmt, c in curves:
        colour = colours.get(m, "#333") if fmt == "all" else fmt_colours.get(fmt, "#333")
        name = m if fmt == "all" else f"{m}, {fmt}"
        rel = c["reliability"]
        xs, ys = [r["confidence"] for r in rel], [r["accuracy"] for r in rel]
        ax1.plot(xs, ys, marker="o", color=colour, label=f"{name}: ECE {c['ece']:.3f}")
        for r in rel:
            ax1.annotate(str(r["count"]), (r["confidence"], r["accuracy"]), fontsize=7,
                         xytext=(3, -9), textcoords="offset points", color=colour)  # fmt: skip
        cov = c["risk_coverage"]
        auc = f": AUROC {c['auroc']:.3f}" if c["auroc"] is not None else ""
        ax2.plot([100 * a for a, _ in cov], [100 * b for _, b in cov], color=colour,
                 label=f"{name}{auc} (n {c['n']})")  # fmt: skip
        ax2.plot([0, 100], [100 * c["accuracy"]] * 2, ls=":", lw=1, color=colour)
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
    ax2.set_title("Risk-coverage (dotted: accuracy of all answers)")
    ax2.legend(fontsize=8, loc="lower left")
    meta = result["run"]
    fig.suptitle(f"{Path(meta['csv']).name}: answer confidence, {meta['model']}", fontsize=10)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return True
