"""Forks at the answer (``fork_at_answer``) against first-token forks alone, every variant at
once, from one evaluation run that opened an answer fork at each site of every branch (no
model needed here).

    uv run benchmarks/eval.py data/eval/dev.csv --modes greedy,fork --seeds 1 \\
        --max-tokens 24 --chat-max-tokens 128 --config /tmp/ans_each.json --out /tmp/dev_each
    uv run benchmarks/fork_answer_rules.py /tmp/dev_each.json \
        --out benchmarks/results/fork_answer_dev

``/tmp/ans_each.json`` is the shipped config with ``fork_at_answer: true``,
``fork_answer_sites: "each"``, ``fork_answer_branches: 1``, ``fork_answer_min: 0``. The fork
record of an item then holds the first-token branches (``parent`` null) and, for each of them
with an answer, a branch forked at the most uncertain token inside its answer span and one
forked at the token just before it (each with the site's varentropy, ``signal``). Each new
branch decodes alone in its row (greedy, from its parent's tokens), so any subset of them is
what a run with fewer answer forks decodes:
- ``max``: the more uncertain of a branch's two sites (the shipped rule, ties to the earlier);
- ``span``: the site inside the span; ``each``: both sites;
- ``kept``: the answer forks of the first-token winner only, else of every branch;
- ``>=t``: a site opens only when its varentropy reaches t (bits^2).
Selection is the engine's: whole-branch margin, scores summed per answer, branches without an
answer last, the pool in engine order (first-token branches, then answer forks by parent and
site). Work: tokens computed (an answer fork re-reads its parent's tokens) and batched steps
(the longest first-token branch plus the longest answer-fork branch: what wall time follows).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlx_entropix.engine.fork import select_branch  # noqa: E402
from mlx_entropix.eval.stats import paired_difference, wilson  # noqa: E402

Branch = dict[str, Any]
THRESHOLDS = (0.0, 1.0, 2.0, 4.0)


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def _score(b: Branch) -> float:
    return _mean(b["margins"])  # the shipped fork_score "margin"


def choose(pool: Sequence[Branch]) -> Branch:
    return pool[select_branch([_score(b) for b in pool], [b["answer"] for b in pool], True)]


def answer_forks(branches: Sequence[Branch], sites: str, from_kept: bool, t: float) -> list[Branch]:
    """The answer-fork branches a run with these settings decodes, in engine order."""
    first = [b for b in branches if b.get("parent") is None]
    parents = [first.index(choose(first))] if from_kept else range(len(first))
    out = []
    for j in parents:
        lo = first[j]["span"][0]
        mine = [b for b in branches if b.get("parent") == j]
        before = [b for b in mine if b["at"] < lo]
        inside = [b for b in mine if b["at"] >= lo]
        if sites == "max":
            both = before + inside  # position order: ties go to the earlier site
            picked = [max(both, key=lambda b: b["signal"])] if both else []
            picked = [b for b in picked if b["signal"] >= t]
        elif sites == "span":
            picked = [b for b in inside if b["signal"] >= t]
        else:
            picked = [b for b in before + inside if b["signal"] >= t]
        out += picked
    return out


def analyse(result: dict[str, Any]) -> dict[str, Any]:
    by = {(r["item"], r["mode"]): r for r in result["records"] if r["seed_index"] == 0}
    items = sorted({i for i, m in by if m == "greedy" and (i, "fork") in by})
    greedy = [float(by[i, "greedy"]["correct"]) for i in items]
    cats = [by[i, "greedy"]["category"] for i in items]
    runs = [by[i, "fork"]["branches"] for i in items]
    firsts = [[b for b in bs if b.get("parent") is None] for bs in runs]
    base = [float(choose(f)["correct"]) for f in firsts]
    rows: list[dict[str, Any]] = []

    def row(name: str, scores: list[float], work: list[float], steps: list[float]) -> None:
        acc = _mean(scores)
        d, dfirst = paired_difference(scores, greedy), paired_difference(scores, base)
        per_cat = {c: _mean([s for s, cc in zip(scores, cats, strict=True) if cc == c])
                   for c in dict.fromkeys(cats)}  # fmt: skip
        rows.append({"rule": name, "accuracy": acc, "ci95": wilson(acc, len(scores)),
                     "delta": d["mean"], "delta_ci95": d["ci95"], "wins": d["wins"],
                     "losses": d["losses"], "vs_first": dfirst["mean"],
                     "vs_first_ci95": dfirst["ci95"], "vs_first_wins": dfirst["wins"],
                     "vs_first_losses": dfirst["losses"], "tokens": _mean(work),
                     "steps": _mean(steps), "per_category": per_cat})  # fmt: skip

    def cost(bs: Sequence[Branch]) -> float:
        return float(sum(b["tokens"] - 1 for b in bs))

    def span(bs: Sequence[Branch]) -> float:
        return float(max((b["tokens"] - 1 for b in bs), default=0))

    g_tok = [float(by[i, "greedy"]["tokens_computed"]) for i in items]
    row("greedy", greedy, g_tok, g_tok)
    row("first-token fork (shipped, k=3)", base, [1 + cost(f) for f in firsts],
        [1 + span(f) for f in firsts])  # fmt: skip
    for sites in ("max", "span", "each"):
        for from_kept in (False, True):
            for t in THRESHOLDS:
                new = [answer_forks(bs, sites, from_kept, t) for bs in runs]
                chosen = [float(choose(f + n)["correct"]) for f, n in zip(firsts, new, strict=True)]
                work = [1 + cost(f) + cost(n) for f, n in zip(firsts, new, strict=True)]
                steps = [1 + span(f) + span(n) for f, n in zip(firsts, new, strict=True)]
                name = f"+ answer forks: {sites}, {'kept' if from_kept else 'all'}, >={t:g}"
                row(name, chosen, work, steps)
    oracle = [float(any(b["correct"] for b in bs)) for bs in runs]
    row("oracle (any branch of the run)", oracle, [1 + cost(bs) for bs in runs],
        [1 + span(bs) for bs in runs])  # fmt: skip
    sec = {m: _mean([by[i, m]["seconds"] for i in items]) for m in ("greedy", "fork")}
    return {"csv": result["run"].get("csv"), "n_items": len(items), "seconds": sec,
            "fork_tokens": _mean([by[i, "fork"]["tokens_computed"] for i in items]),
            "rows": rows}  # fmt: skip


def _delta(mean: float, ci: Sequence[float]) -> str:
    return f"{100 * mean:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def to_markdown(a: dict[str, Any]) -> str:
    g, f = a["seconds"]["greedy"] or 1.0, a["seconds"]["fork"]
    lines = [
        f"**{a['csv']}**: {a['n_items']} items. Measured in this run (answer forks at each site "
        f"of every branch, no threshold): greedy {g:.1f} s per answer, fork {f:.1f} s "
        f"({f / g:.1f}x greedy, {a['fork_tokens']:.0f} tokens computed).",
        "",
        "| rule | accuracy % [Wilson 95%] | Δ vs greedy, pts [paired 95%] | Δ vs first-token "
        "fork, pts [paired 95%] | better / worse vs first-token | tokens computed | batched "
        "steps |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in a["rows"]:
        lo, hi = r["ci95"]
        d = _delta(r["delta"], r["delta_ci95"])
        v = _delta(r["vs_first"], r["vs_first_ci95"])
        lines.append(
            f"| {r['rule']} | {100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | {d} "
            f"| {v} | {r['vs_first_wins']} / {r['vs_first_losses']} | {r['tokens']:.0f} "
            f"| {r['steps']:.0f} |"
        )
    cats = list(a["rows"][0]["per_category"])
    lines += ["", "| rule | " + " | ".join(cats) + " |", "|---" * (len(cats) + 1) + "|"]
    for r in a["rows"]:
        if r["rule"].endswith(">=0") or not r["rule"].startswith("+"):
            cells = " | ".join(f"{100 * r['per_category'][c]:.0f}" for c in cats)
            lines.append(f"| {r['rule']} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", help="an eval.py result JSON with greedy and fork records")
    p.add_argument("--out", help="write <out>.json and <out>.md")
    args = p.parse_args()
    a = analyse(json.loads(Path(args.result).read_text()))
    md = to_markdown(a)
    print(md)
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(a, indent=1) + "\n")
        Path(f"{args.out}.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
