"""Reports of an evaluation result: markdown tables and PNG charts of the accuracy per mode
and of the answers' confidence (reliability diagram and risk-coverage curve per mode, and per
prompt format when there are several)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..events import STATE_INFO, STATES


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else f"{x:.3f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The summary table (and a per-category table) as GitHub markdown."""
    summary, meta = result["summary"], result["run"]
    lines = [
        f"**{meta['csv']}**: {meta['n_items']} items, {meta['seeds']} seed(s) for sampled "
        f"modes (greedy, fork: once), max {meta['max_tokens']} tokens, model {meta['model']}.",
        "",
        "| mode | accuracy % | 95% CI (Wilson) | Δ vs greedy, pts [95% CI] | better / worse items "
        "| mean tokens | tok/s (end to end) | time s "
        "| tokens per state (" + " / ".join(STATES) + ") |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, s in summary.items():
        d = s.get("vs_greedy")
        diff, wl = ("baseline" if mode == "greedy" else "-"), "-"  # no greedy run: no Δ
        if d:
            diff = f"{100 * d['mean']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
            wl = f"{d['wins']} / {d['losses']}"
        states = " / ".join(str(s["state_counts"].get(k, 0)) for k in STATES)
        computed = s.get("mean_tokens_computed", s["mean_tokens"])
        tokens = f"{s['mean_tokens']:.1f}" + (
            f" ({computed:.1f} computed)" if computed > s["mean_tokens"] + 0.05 else ""
        )
        lines.append(
            f"| {mode} | {_f(s['accuracy'], True)} "
            f"| [{_f(s['ci95'][0], True)}, {_f(s['ci95'][1], True)}] "
            f"| {diff} | {wl} | {tokens} | {s['tok_s']:.1f} | {s['time_s']:.1f} "
            f"| {states} |"
        )
    cats = sorted({c for s in summary.values() for c in s["accuracy_per_category"]})
    if len(cats) > 1 or (cats and cats[0]):
        modes = list(summary)
        lines += ["", "| category | " + " | ".join(f"{m} %" for m in modes) + " |"]
        lines.append("|---" * (len(modes) + 1) + "|")
        for c in cats:
            vals = [summary[m]["accuracy_per_category"].get(c) for m in modes]
            cells = " | ".join(_f(v, True) for v in vals)
            lines.append(f"| {c or '(none)'} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> None:
    """PNG: accuracy with 95% CI per mode, accuracy per category, and tokens per state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = result["summary"]
    modes = list(summary)
    fig = Figure(figsize=(15, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.6, 1.2]})
    colours = {"greedy": "#666666", "normal": "#56B4E9", "entropix": "#0072B2"}

    accs = [100 * summary[m]["accuracy"] for m in modes]
    err = [
        [a - 100 * summary[m]["ci95"][0] for a, m in zip(accs, modes, strict=True)],
        [100 * summary[m]["ci95"][1] - a for a, m in zip(accs, modes, strict=True)],
    ]
    ax1.bar(modes, accs, yerr=err, capsize=6, color=[colours.get(m, "#999") for m in modes])
    for x, (m, a) in enumerate(zip(modes, accs, strict=True)):
        d = summary[m].get("vs_greedy")
        note = f"{a:.1f}%" + (f"\nΔ {100 * d['mean']:+.1f} pts" if d else "")
        ax1.text(x, 2, note, ha="center", va="bottom", color="white", fontsize=9)
    ax1.set_ylim(0, 100)
    ax1.set_ylabel("accuracy % (95% Wilson CI)")
    ax1.set_title("Accuracy per mode")

    cats = sorted({c for m in modes for c in summary[m]["accuracy_per_category"]})
    width = 0.8 / max(len(modes), 1)
    for k, m in enumerate(modes):
        vals = [100 * summary[m]["accuracy_per_category"].get(c, 0.0) for c in cats]
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(cats))]
        ax2.bar(xs, vals, width, label=m, color=colours.get(m, "#999"))
    ax2.set_xticks(range(len(cats)), [c or "(all)" for c in cats], rotation=20, ha="right")
    ax2.set_ylim(0, 100)
    ax2.set_title("Accuracy per category")
    ax2.legend(fontsize=8)

    bottom = [0.0] * len(modes)
    for state in STATES:
        fracs = []
        for m in modes:
            total = sum(summary[m]["state_counts"].values()) or 1
            fracs.append(100 * summary[m]["state_counts"].get(state, 0) / total)
        ax3.bar(modes, fracs, bottom=bottom, color=STATE_INFO[state].colour, label=state, width=0.6)
        bottom = [b + f for b, f in zip(bottom, fracs, strict=True)]
    for x, m in enumerate(modes):
        s = summary[m]
        ax3.text(x, 101, f"{s['mean_tokens']:.1f} tok\n{s['tok_s']:.0f} tok/s", ha="center",
                 va="bottom", fontsize=8)  # fmt: skip
    ax3.set_ylim(0, 118)
    ax3.set_ylabel("% of generated tokens")
    ax3.set_title("Tokens per state, mean tokens, speed")
    ax3.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    meta = result["run"]
    fig.suptitle(
        f"{Path(meta['csv']).name}: {meta['n_items']} items, {meta['seeds']} seed(s), "
        f"{meta['model']}",
        fontsize=10,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


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
