"""Statistics of an evaluation: Wilson intervals, paired differences, per-mode summaries.

A per-item score is the fraction of its seeds answered correctly; accuracy is the mean score
over items; differences between modes are paired per item.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from ..config import Mode
from ..events import STATES
from .confidence_stats import summarize_confidence

Z95 = 1.959963984540054  # two-sided 95% normal quantile
# Keys whose values depend on the machine's speed; everything else is deterministic.
TIMING_KEYS = frozenset({"seconds", "time_s", "tok_s", "s_per_generation", "wall_s", "started"})


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n`` items.

    With several seeds, ``p`` is the mean per-item score (a fraction in [0, 1]). Using n = items
    (not items x seeds) is conservative: a score in [0, 1] with mean p has variance at most
    p(1 - p), the Bernoulli variance the interval assumes, and seeds are not independent items.
    """
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: Sequence[float], b: Sequence[float], z: float = Z95) -> dict[str, Any]:
    """Mean of per-item differences a_i - b_i with a normal-approximation 95% interval.

    mean(d) +- z * sd(d) / sqrt(n), sd with ddof=1 (the paired z-interval; with 100+ items it
    is indistinguishable from the paired t-interval). Also counts items where a is better
    (wins), worse (losses) or equal (ties).
    """
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    half = z * sd / math.sqrt(n) if n else 0.0
    return {
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "wins": sum(x > 0 for x in d),
        "losses": sum(x < 0 for x in d),
        "ties": sum(x == 0 for x in d),
    }


def _item_scores(records: Iterable[dict[str, Any]], mode: str) -> dict[int, float]:
    """Per item: the fraction of its seeds answered correctly in ``mode``."""
    hits: dict[int, list[bool]] = defaultdict(list)
    for r in records:
        if r["mode"] == mode:
            hits[r["item"]].append(r["correct"])
    return {i: sum(h) / len(h) for i, h in sorted(hits.items())}


def summarize(records: Sequence[dict[str, Any]], modes: Sequence[Mode]) -> dict[str, Any]:
    """Accuracy with its 95% CI, paired difference vs greedy, cost and states per mode."""
    out: dict[str, Any] = {}
    base = _item_scores(records, "greedy") if "greedy" in modes else None
    for mode in modes:
        recs = [r for r in records if r["mode"] == mode]
        scores = _item_scores(recs, mode)
        n = len(scores)
        acc = sum(scores.values()) / n if n else 0.0
        tokens = sum(r["tokens"] for r in recs)
        seconds = sum(r["seconds"] for r in recs)
        states = Counter({s: 0 for s in STATES})
        by_seed: dict[int, list[bool]] = defaultdict(list)
        for r in recs:
            states.update(r["state_counts"])
            by_seed[r["seed_index"]].append(r["correct"])
        by_cat: dict[str, list[float]] = defaultdict(list)
        cats = {r["item"]: r["category"] for r in recs}
        for i, s in scores.items():
            by_cat[cats[i]].append(s)
        row: dict[str, Any] = {
            "accuracy": acc,
            "ci95": list(wilson(acc, n)),
            "n_items": n,
            "n_generations": len(recs),
            "accuracy_per_seed": [sum(v) / len(v) for _, v in sorted(by_seed.items())],
            "accuracy_per_category": {c: sum(v) / len(v) for c, v in sorted(by_cat.items())},
            "mean_tokens": tokens / len(recs) if recs else 0.0,
            "mean_tokens_computed": (
                sum(r.get("tokens_computed", r["tokens"]) for r in recs) / len(recs) if recs else 0
            ),
            "tokens": tokens,
            "time_s": seconds,
            "tok_s": tokens / seconds if seconds > 0 else 0.0,
            "s_per_generation": seconds / len(recs) if recs else 0.0,
            "finish_reasons": dict(sorted(Counter(r["finish_reason"] for r in recs).items())),
            "state_counts": dict(states),
        }
        conf = summarize_confidence(recs)
        if conf is not None:  # the answers' confidence: AUROC, ECE, risk-coverage
            row["confidence"] = conf
        if base is not None and mode != "greedy":
            common = sorted(set(scores) & set(base))
            row["vs_greedy"] = paired_difference(
                [scores[i] for i in common], [base[i] for i in common]
            )
        out[mode] = row
    return out


def without_timings(obj: Any) -> Any:
    """``obj`` with every machine-speed-dependent value removed (for determinism checks)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj
