"""Fork mode (CoT-decoding) against greedy and self-consistency, every selection rule at once,
from one evaluation run that kept every branch (no model needed here).

    uv run benchmarks/eval.py data/eval/core.csv --modes greedy,fork,sc --sc-k 5 --seeds 1 \\
        --max-tokens 24 --chat-max-tokens 128 --config /tmp/k10.json --out /tmp/test_k10
    uv run benchmarks/fork_rules.py /tmp/test_k10.json --out benchmarks/results/fork_cot_test

``/tmp/k10.json`` is the shipped config with ``fork_branches: 10``. The fork record of an item
holds its 10 branches in candidate order (branch j starts with the j-th most likely token;
each is decoded greedily and alone in its row, so the first k branches of the 10 are the
branches of a k-branch fork), with the answer the grader's reader took from each, whether it
is right, the answer span and each token's margin p(top1) - p(top2). The self-consistency
record holds its k rows (row i's seed does not depend on k), so its first 3 rows are k=3.

Rules (each over the first k branches; branches without an answer rank last in all):
- ``span``: the shipped score, mean margin over the answer span (the fork token's margin, the
  same for every branch, included when the span starts there);
- ``span-after-fork``: the span without the fork token unless it is the whole span;
- ``branch``: mean margin over the whole branch;
- ``vote``: the answer most branches reach (each branch scores 1), its best-scored branch;
plus ``+sum``: CoT-decoding's aggregation (scores summed per answer, the best branch of the
winning answer), and the oracle (some branch right).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlx_entropix.engine.fork import select_branch  # noqa: E402
from mlx_entropix.eval.consistency import vote  # noqa: E402
from mlx_entropix.eval.stats import paired_difference, wilson  # noqa: E402

Branch = dict[str, Any]


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def span_score(b: Branch) -> float:
    lo, hi = b["span"]
    return _mean(b["margins"][lo:hi])


def after_fork_score(b: Branch) -> float:
    lo, hi = b["span"]
    return _mean(b["margins"][max(lo, 1) : hi] if hi > max(lo, 1) else b["margins"][lo:hi])


def branch_score(b: Branch) -> float:
    return _mean(b["margins"])


RULES: dict[str, Callable[[Branch], float]] = {
    "span": span_score,
    "span-after-fork": after_fork_score,
    "branch": branch_score,
}


def choose(branches: Sequence[Branch], rule: str, aggregate: bool) -> Branch:
    answers = [b["answer"] for b in branches]
    if rule == "vote":
        scores = [span_score(b) for b in branches]
        counts = [1.0 if a is not None else 0.0 for a in answers]
        # the answer most branches reach, then its best-scored branch
        won = branches[select_branch(counts, answers, aggregate=True)]["answer"]
        if won is None:
            return branches[select_branch(scores, answers, aggregate=False)]
        members = [i for i, a in enumerate(answers) if a == won]
        return branches[max(members, key=lambda i: (scores[i], -i))]
    scores = [RULES[rule](b) for b in branches]
    return branches[select_branch(scores, answers, aggregate)]


def analyse(result: dict[str, Any], ks: Sequence[int]) -> dict[str, Any]:
    recs = result["records"]
    by = {(r["item"], r["mode"]): r for r in recs if r["seed_index"] == 0}
    items = sorted({i for i, m in by if m == "greedy" and (i, "fork") in by})
    greedy = [float(by[i, "greedy"]["correct"]) for i in items]
    cats = [by[i, "greedy"]["category"] for i in items]
    rows: list[dict[str, Any]] = []
    versus: list[dict[str, Any]] = []  # fork rules vs self-consistency at the same k, paired

    def row(name: str, k: int | str, scores: list[float], **extra: Any) -> None:
        acc = _mean(scores)
        d = paired_difference(scores, greedy)
        per_cat = {c: _mean([s for s, cc in zip(scores, cats, strict=True) if cc == c])
                   for c in dict.fromkeys(cats)}  # fmt: skip
        rows.append({"rule": name, "k": k, "accuracy": acc, "ci95": wilson(acc, len(scores)),
                     "delta": d["mean"], "delta_ci95": d["ci95"], "wins": d["wins"],
                     "losses": d["losses"], "per_category": per_cat, "scores": scores,
                     **extra})  # fmt: skip

    row("greedy", 1, greedy, tokens=_mean([by[i, "greedy"]["tokens_computed"] for i in items]))
    for k in ks:
        branches = [by[i, "fork"]["branches"][:k] for i in items]
        # the fork's step plus each branch's own steps (an ended branch leaves the batch)
        work = _mean([1 + sum(b["tokens"] - 1 for b in bs) for bs in branches])
        for rule in (*RULES, "vote"):
            for agg in (False, True) if rule != "vote" else (False,):
                chosen = [choose(bs, rule, agg) for bs in branches]
                name = rule + ("+sum" if agg else "")
                row(name, k, [float(c["correct"]) for c in chosen], tokens=work)
        row("oracle", k, [float(any(b["correct"] for b in bs)) for bs in branches], tokens=work)
    sc_k = len(by[items[0], "sc"]["branches"]) if (items[0], "sc") in by else 0
    for k in sorted({3, sc_k} - {0}):
        if k > sc_k:
            continue
        votes = []
        for i in items:
            rows_i = by[i, "sc"]["branches"][:k]
            votes.append(float(rows_i[vote([r["answer"] or None for r in rows_i])]["correct"]))
        sc_work = _mean([by[i, "sc"]["tokens_computed"] * k / sc_k for i in items])
        row("self-consistency", k, votes, tokens=sc_work)
        for r in [r for r in rows if r["k"] == k and r["rule"] in ("span+sum", "branch+sum")]:
            d = paired_difference(r["scores"], votes)
            versus.append({"rule": r["rule"], "k": k, "delta": d["mean"], "ci95": d["ci95"]})
        oracle = [float(any(r["correct"] for r in by[i, "sc"]["branches"][:k])) for i in items]
        row("sc oracle", k, oracle)

    def cost(mode: str) -> dict[str, float]:
        rs = [by[i, mode] for i in items if (i, mode) in by]
        return {"seconds": _mean([r["seconds"] for r in rs]),
                "tokens_computed": _mean([r["tokens_computed"] for r in rs])}  # fmt: skip

    engine = _mean([float(by[i, "fork"]["correct"]) for i in items])
    return {
        "csv": result["run"].get("csv"),
        "n_items": len(items),
        "fork_branches": len(by[items[0], "fork"]["branches"]),
        "engine_fork_accuracy": engine,  # the engine's own choice at the run's k and rule
        "cost": {m: cost(m) for m in ("greedy", "fork", "sc")},
        "rows": rows,
        "fork_vs_sc": versus,
    }


def to_markdown(a: dict[str, Any]) -> str:
    g = a["cost"]["greedy"]["seconds"] or 1.0
    lines = [
        f"**{a['csv']}**: {a['n_items']} items, fork run with {a['fork_branches']} branches "
        f"(engine's choice: {100 * a['engine_fork_accuracy']:.1f}%). Wall time per answer "
        + ", ".join(f"{m} {c['seconds']:.1f} s ({c['seconds'] / g:.1f}x greedy, "
                    f"{c['tokens_computed']:.0f} tokens computed)" for m, c in a["cost"].items())
        + ".",
        "",
        "| rule | k | accuracy % [Wilson 95%] | Δ vs greedy, pts [paired 95%] | better / worse "
        "| tokens computed / answer |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in a["rows"]:
        lo, hi = r["ci95"]
        dlo, dhi = r["delta_ci95"]
        delta = "baseline" if r["rule"] == "greedy" else (
            f"{100 * r['delta']:+.1f} [{100 * dlo:+.1f}, {100 * dhi:+.1f}]")  # fmt: skip
        lines.append(
            f"| {r['rule']} | {r['k']} | {100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
            f" | {delta} | {r['wins']} / {r['losses']} | {r.get('tokens', float('nan')):.0f} |"
        )
    lines += [
        "",
        "| fork rule vs self-consistency, same k | k | Δ pts [paired 95%] |",
        "|---|---|---|",
    ]
    lines += [
        f"| {v['rule']} | {v['k']} | {100 * v['delta']:+.1f} "
        f"[{100 * v['ci95'][0]:+.1f}, {100 * v['ci95'][1]:+.1f}] |"
        for v in a["fork_vs_sc"]
    ]
    cats = list(a["rows"][0]["per_category"])
    lines += ["", "| rule | k | " + " | ".join(cats) + " |", "|---" * (len(cats) + 2) + "|"]
    for r in a["rows"]:
        cells = " | ".join(f"{100 * r['per_category'][c]:.0f}" for c in cats)
        lines.append(f"| {r['rule']} | {r['k']} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("result", help="an eval.py result JSON with greedy, fork and sc records")
    p.add_argument("--ks", default="3,5,10")
    p.add_argument("--out", help="write <out>.json and <out>.md")
    args = p.parse_args()
    result = json.loads(Path(args.result).read_text())
    a = analyse(result, [int(k) for k in args.ks.split(",")])
    md = to_markdown(a)
    print(md)
    if args.out:
        Path(f"{args.out}.json").write_text(json.dumps(a, indent=1) + "\n")
        Path(f"{args.out}.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
