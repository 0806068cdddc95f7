"""``--plot``: a PNG of each token's entropy and varentropy, its quadrant, and the thresholds.

Per run: both metrics against token position, and the (entropy, varentropy) plane shaded by the
state each point would get under the config. Matplotlib's Agg canvas is used directly (no pyplot
global state), at a fixed size: ``FIGSIZE`` inches at ``DPI``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import mlx.core as mx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..config import SamplerConfig
from ..events import STATE_INFO, STATES, TokenEvent
from ..uncertainty.sampler import classify

FIGSIZE = (14.0, 8.0)
DPI = 100
PNG_SIZE = (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))  # (width, height) in pixels
_GRID = 240  # resolution of the shaded state regions


def _colours(events: Sequence[TokenEvent]) -> list[str]:
    return [STATE_INFO[e.state].colour for e in events]


def _state_regions(cfg: SamplerConfig, xmax: float, ymax: float) -> np.ndarray:
    """Index into STATES of each cell of the (entropy, varentropy) plane under ``cfg``."""
    xs = np.linspace(0, xmax, _GRID)
    ys = np.linspace(0, ymax, _GRID)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)  # (y, x, [entropy, varentropy])
    # The state depends on entropy and varentropy only; the other four metrics are zero.
    metrics = np.concatenate([grid, np.zeros((*grid.shape[:2], 4))], axis=-1)
    return np.array(classify(mx.array(metrics, dtype=mx.float32), cfg))


def _series(ax, events, values, config: SamplerConfig, thresholds, ylabel: str) -> None:
    """``values`` per token, with the config's ``thresholds`` (names of its fields) as lines."""
    x = np.arange(len(events))
    ax.plot(x, values, color="0.6", lw=1, zorder=1)
    ax.scatter(x, values, c=_colours(events), s=22, zorder=2, edgecolors="none")
    for name in thresholds:
        value = getattr(config, name)
        ax.axhline(value, ls="--", lw=0.8, color="0.35", zorder=0)
        ax.annotate(
            f"{name} {value:g}",
            (1.0, value),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
            color="0.3",
            annotation_clip=False,
        )
    ax.set_ylabel(ylabel, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.25)


def plot_runs(
    runs: Sequence[tuple[str, Sequence[TokenEvent]]],
    config: SamplerConfig,
    path: str | Path,
    title: str = "",
) -> Path:
    """Write the PNG for one or more runs (e.g. entropix and normal on the same prompt)."""
    runs = list(runs) or [("no run", [])]
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(2 * len(runs), 2, width_ratios=(3.2, 1))
    metrics = [e.metrics for _, events in runs for e in events]
    # One plane extent for every run so they can be compared at a glance.
    xmax = max([config.high_ent * 1.25, *(m.entropy * 1.05 for m in metrics)])
    ymax = max([config.high_vent * 1.25, *(m.varentropy * 1.05 for m in metrics)])
    regions = _state_regions(config, xmax, ymax)
    cmap = ListedColormap([STATE_INFO[s].colour for s in STATES])

    for i, (name, events) in enumerate(runs):
        ax_e = fig.add_subplot(grid[2 * i, 0])
        ax_v = fig.add_subplot(grid[2 * i + 1, 0], sharex=ax_e)
        ax_p = fig.add_subplot(grid[2 * i : 2 * i + 2, 1])
        ent = [e.metrics.entropy for e in events]
        vent = [e.metrics.varentropy for e in events]
        _series(ax_e, events, ent, config, ("low_ent", "med_ent", "high_ent"), "entropy (bits)")
        _series(ax_v, events, vent, config, ("low_vent", "high_vent"), "varentropy (bits²)")
        ax_e.set_title(f"{name}: {len(events)} tokens", fontsize=10, loc="left")
        ax_e.tick_params(labelbottom=False)
        ax_v.set_xlabel("token position", fontsize=9)
        ax_v.xaxis.set_major_locator(MaxNLocator(integer=True))
        if not events:
            ax_e.text(0.5, 0.5, "no tokens", transform=ax_e.transAxes, ha="center", va="center")

        ax_p.imshow(
            regions,
            origin="lower",
            extent=(0, xmax, 0, ymax),
            aspect="auto",
            cmap=cmap,
            vmin=-0.5,
            vmax=len(STATES) - 0.5,
            alpha=0.22,
            interpolation="nearest",
        )
        # The thresholds as lines too: some regions (e.g. flowing, below 0.1 bits) are thin.
        for x in (config.low_ent, config.med_ent, config.high_ent):
            ax_p.axvline(x, ls="--", lw=0.6, color="0.45")
        for y in (config.low_vent, config.high_vent):
            ax_p.axhline(y, ls="--", lw=0.6, color="0.45")
        ax_p.scatter(ent, vent, c=_colours(events), s=26, edgecolors="black", linewidths=0.4)
        ax_p.set_xlim(0, xmax)
        ax_p.set_ylim(0, ymax)
        ax_p.set_xlabel("entropy (bits)", fontsize=9)
        ax_p.set_ylabel("varentropy (bits²)", fontsize=9)
        ax_p.set_title(f"{name}: quadrants", fontsize=10, loc="left")
        ax_p.tick_params(labelsize=8)

    labels = [(s, STATE_INFO[s].label) for s in STATES]
    handles = [
        Patch(color=STATE_INFO[s].colour, label=label if s in label else f"{label} ({s})")
        for s, label in labels
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(STATES), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))
    return path


def plot_paths(base: Path, names: Sequence[str]) -> list[Path]:
    """--plot's file per prompt: ``base`` for one; for several, ``<stem>-<name><suffix>``, the
    name made file-safe and short, and ``-<n>`` (1-based prompt number) after a name already
    taken, so that no plot overwrites another's (names need not be unique, and two can sanitize
    alike)."""
    if len(names) == 1:
        return [base]
    paths: list[Path] = []
    for n, name in enumerate(names, 1):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        safe = safe.encode()[:100].decode(errors="ignore")  # a file name has 255 bytes at most
        first = path = base.with_name(f"{base.stem}-{safe}{base.suffix or '.png'}")
        k = n
        while path in paths:  # another prompt's name could also end in -<n>
            path, k = first.with_stem(f"{first.stem}-{k}"), k + 1
        paths.append(path)
    return paths
