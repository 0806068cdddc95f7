"""Self-consistency as a confidence feature (opt-in idea, not shipped): the share of k sampled
rows whose answer is the greedy answer's, next to the answer score, leave one category out.

Dev only. The rows come from an evaluation in mode sc of a dev calibration set (its records
keep every row's answer), the greedy answer and its features from that set's greedy result:

    uv run benchmarks/eval.py benchmarks/results/confidence_calib_raw.csv --modes sc \\
        --sc-k 4 --seeds 1 --max-tokens 8 --out sc_calib_raw     # ~9 min here
    uv run benchmarks/confidence_sc.py \\
        benchmarks/results/confidence/calib_raw.json:sc_calib_raw.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx_entropix.answers import normalize  # noqa: E402
from mlx_entropix.eval import confidence_select as cs  # noqa: E402
from mlx_entropix.eval.confidence_cli import _load_records  # noqa: E402
from mlx_entropix.eval.confidence_stats import auroc, paired_bootstrap  # noqa: E402

CANDIDATES = [
    cs.Candidate("answer_sum_logprob (recal)", ("answer_sum_logprob",), recalibrate=True),
    cs.Candidate("agreement", ("sc_agreement",)),
    cs.Candidate(
        "answer_sum_logprob + agreement, l2 10", ("answer_sum_logprob", "sc_agreement"), 10.0
    ),  # fmt: skip
    cs.Candidate("whole_mean_logprob (isotonic)", ("whole_mean_logprob",), kind="isotonic"),
    cs.Candidate(
        "whole_mean_logprob + agreement, l2 10", ("whole_mean_logprob", "sc_agreement"), 10.0
    ),  # fmt: skip
]


def with_agreement(greedy_path: str, sc_path: str) -> list[dict]:
    greedy = {r["item"]: r for r in _load_records([greedy_path], "greedy")}
    out = []
    for r in json.loads(Path(sc_path).read_text())["records"]:
        if r["mode"] != "sc":
            continue
        g = greedy[r["item"]]
        mine = normalize(g["extracted"] or "")
        rows = [normalize(b["answer"] or "") for b in r["branches"]]
        agree = sum(a == mine and a != "" for a in rows) / len(rows)
        out.append(dict(g, features=dict(g["features"], sc_agreement=agree)))
    return out


if __name__ == "__main__":
    recs = [r for arg in sys.argv[1:] for r in with_agreement(*arg.split(":"))]
    print("| candidate (leave one category out) | format | answers | AUROC | within-category "
          "AUROC | ECE | top half % | all % |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for c in CANDIDATES:
        for fmt, b in cs.evaluate(recs, c).items():
            top, acc = 100 * b["top_half_accuracy"], 100 * b["accuracy"]
            within = b["within_category_auroc"]
            print(f"| {c.name} | {fmt} | {b['n']} | {b['auroc']:.3f} | {within:.3f} "
                  f"| {b['ece']:.3f} | {top:.1f} | {acc:.1f} |")  # fmt: skip
    base, added = CANDIDATES[0], CANDIDATES[2]
    a, b = cs.leave_category_out(recs, added), cs.leave_category_out(recs, base)
    d = paired_bootstrap(auroc, a, b, [bool(r["correct"]) for r in recs])  # type: ignore[arg-type]
    lo, hi = d["ci95"]
    print(f"\nAUROC, {added.name} - {base.name}: {d['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
