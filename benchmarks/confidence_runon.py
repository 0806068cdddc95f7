"""Raw answers that run on past the line break, as a request without a stop string gives them
(" 85\\n13 x 4 = 52\\n..."): does the engine's span (no kind) still land on the answer, and what
do the previous and the shipped raw maps make of it?

Dev only (``data/eval/dev.csv``'s raw items, greedy, no stop, ``--max-tokens`` 12). Each map is
fitted leave one category out on the stopped dev records (``results/confidence/*.json``) and
scores the same answers' features, stopped (the evaluation's record) and run on (this run).

    uv run benchmarks/confidence_runon.py --per-category 40  # ~8 min here
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.engine.confidence import TokenSignal, features  # noqa: E402
from mlx_entropix.eval import confidence_select as cs  # noqa: E402
from mlx_entropix.eval.confidence_cli import _load_records  # noqa: E402
from mlx_entropix.eval.confidence_fit import refeaturized, scores_report  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "confidence"
DEV = [RESULTS / f"{n}.json" for n in ("dev", "word_problem_chat", "chat_dev", "calib_raw",
                                       "calib_chat", "calib2_raw", "calib2_chat")]  # fmt: skip
MAPS = {
    "previous: first_margin + whole_mean_logprob, l2 10": cs.Candidate(
        "old", ("first_margin", "whole_mean_logprob"), 10.0
    ),
    "shipped: answer_sum_logprob (recal)": cs.Candidate(
        "new", ("answer_sum_logprob",), recalibrate=True
    ),
}


def generate_runon(per_category: int, max_tokens: int) -> list[dict]:
    from mlx_entropix.engine.generate import generate
    from mlx_entropix.eval.harness import build_prompt, load_items
    from mlx_entropix.io.load import load

    lm = load(None)
    dev = json.loads((RESULTS / "dev.json").read_text())
    stopped = {r["item"]: r for r in refeaturized(dev) if r["mode"] == "greedy"}
    seen: dict[str, int] = {}
    out = []
    for it in load_items(ROOT / "data" / "eval" / "dev.csv"):
        if it.format != "raw" or seen.get(it.category, 0) >= per_category:
            continue
        seen[it.category] = seen.get(it.category, 0) + 1
        signals, end, done = [], 0, None
        prompt = build_prompt(lm.tokenizer, it, None, ())
        for ev in generate(lm, prompt, mode="greedy", max_tokens=max_tokens, top_logprobs=2):
            if ev.type == "token":
                end += len(ev.text)
                top2 = tuple(t.logprob for t in ev.top[:2])
                metrics = tuple(ev.metrics.model_dump().values())
                signals.append(TokenSignal(end, ev.logprob, top2 if len(top2) == 2 else None,  # type: ignore[arg-type]
                                           metrics))  # fmt: skip
            elif ev.type == "done":
                done = ev
        assert done is not None
        r = stopped[it.index]
        span = None if done.answer_span is None else tuple(done.answer_span)
        out.append({
            "item": it.index, "category": it.category, "correct": r["correct"],
            "text": done.text, "span_text": done.text[span[0]:span[1]] if span else None,
            "stopped_span_text": r["text"][r["answer_span"][0]:r["answer_span"][1]],
            "run_on": features(done.text, signals, span), "stopped": r["features"],
        })  # fmt: skip
    return out


def compare(answers: list[dict]) -> list[str]:
    dev = [r for r in cs.with_format(_load_records([str(p) for p in DEV], "greedy"))
           if r["format"] == "raw"]  # fmt: skip
    same = sum(a["span_text"] == a["stopped_span_text"] for a in answers)
    lines = [f"{len(answers)} dev raw answers run on; engine span (no kind) = grader's: {same}",
             "", "| map (fitted leave one category out) | text | AUROC | within-category AUROC "
             "| ECE |", "|---|---|---|---|---|"]  # fmt: skip
    recs = [{"correct": a["correct"], "category": a["category"], "format": "raw"} for a in answers]
    for name, c in MAPS.items():
        fitted = {k: cs.fit_candidate([d for d in dev if d["category"] != k], c)
                  for k in {a["category"] for a in answers}}  # fmt: skip
        for cond in ("stopped", "run_on"):
            b = scores_report([fitted[a["category"]](a[cond]) for a in answers], recs)["raw"]
            figs = [b[k] for k in ("auroc", "within_category_auroc", "ece")]
            cells = " | ".join("-" if x is None else f"{x:.3f}" for x in figs)
            lines.append(f"| {name} | {cond.replace('_', ' ')} | {cells} |")
    return lines


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-category", type=int, default=40)
    p.add_argument("--max-tokens", type=int, default=12)
    p.add_argument("--answers", help="a JSON written by an earlier run: compare only")
    p.add_argument("--out", default=str(RESULTS / "runon_dev.json"))
    args = p.parse_args()
    if args.answers:
        answers = json.loads(Path(args.answers).read_text())
    else:
        answers = generate_runon(args.per_category, args.max_tokens)
        Path(args.out).write_text(json.dumps(answers, indent=1) + "\n")
    print("\n".join(compare(answers)))
