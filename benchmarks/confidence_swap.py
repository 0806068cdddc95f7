"""Does a greedy answer survive swapping its question's two alternatives? (README "Answer
confidence": tried, not shipped.) Every dev item whose question offers two alternatives ("73 or
89?", or options A) / B)) is asked again with them swapped, greedy; its answer is "stable" when
it names the same option. Prints per kind the accuracy of stable and flipped answers and the
shipped map's AUROC (in sample) with flipped answers capped at their accuracy:

    uv run benchmarks/confidence_swap.py        # ~4 min; writes results/confidence/swap_dev.json
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_entropix  # noqa: E402, F401  (the BLAS preload, before mlx.core)
from mlx_entropix.answers import extracted, parse_options  # noqa: E402
from mlx_entropix.engine.confidence import shipped_model  # noqa: E402
from mlx_entropix.engine.generate import generate  # noqa: E402
from mlx_entropix.eval.confidence_fit import refeaturized  # noqa: E402
from mlx_entropix.eval.confidence_stats import auroc  # noqa: E402
from mlx_entropix.eval.harness import Item, build_prompt, load_items  # noqa: E402
from mlx_entropix.io.load import load  # noqa: E402

RESULTS = ROOT / "benchmarks/results/confidence"
SETS = ("dev", "calib_raw", "chat_dev", "calib_chat", "calib2_chat")  # greedy results, --signals
INLINE = re.compile(r"([\w.\-]+) or ([\w.\-]+)(?=\?)")  # "73 or 89?"


def swapped(item: Item) -> tuple[str, dict[str, str]] | None:
    """The prompt with its two alternatives swapped, and how a letter maps back; None when the
    question offers none."""
    if item.kind == "choice":
        opts = parse_options(item.prompt)
        if len(opts) != 2:
            return None
        (a, ta), (b, tb) = opts.items()
        p = item.prompt.replace(f"{a}) {ta}", "\0").replace(f"{b}) {tb}", f"{b}) {ta}")
        return p.replace("\0", f"{a}) {tb}"), {a: b, b: a}
    lines = item.prompt.split("\n")
    last = len(lines) - (2 if item.format == "raw" else 1)  # raw: the line before the cue
    if not (found := list(INLINE.finditer(lines[last]))):
        return None
    m = found[-1]
    lines[last] = lines[last][: m.start()] + f"{m[2]} or {m[1]}" + lines[last][m.end() :]
    return "\n".join(lines), {}


def main() -> None:
    lm = load(None)
    model = shipped_model(lm.info.name)
    rows = []
    for name in SETS:
        result = json.loads((RESULTS / f"{name}.json").read_text())
        recs = {r["item"]: r for r in refeaturized(result) if r["mode"] == "greedy"}
        for item in load_items(ROOT / result["run"]["csv"]):
            swap = swapped(item)
            if swap is None or item.index not in recs:
                continue
            prompt = build_prompt(lm.tokenizer, dataclasses.replace(item, prompt=swap[0]), None, [])
            stops = ("\n",) if item.format == "raw" else ()
            events = generate(lm, prompt, mode="greedy", max_tokens=32, stop=stops, seed=0)
            text = "".join(e.text for e in events if e.type == "token")
            options = parse_options(swap[0]) if item.kind == "choice" else None
            again = extracted(text, item.kind, options)
            again = swap[1].get(again, again) if again else again
            r = recs[item.index]
            first = r["extracted"]
            rows.append({"set": name, "item": item.index, "category": item.category,
                         "format": item.format, "correct": r["correct"], "answer": first,
                         "swapped_answer": again,
                         "stable": first is not None and str(first).lower() == str(again).lower(),
                         "confidence": (model(r["features"], item.format) if model else None)
                         or 0.0})  # fmt: skip
    (RESULTS / "swap_dev.json").write_text(json.dumps(rows, indent=1) + "\n")
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        counts[r["category"]][(r["stable"], r["correct"])] += 1
    print("| kind | stable: right / all | flipped: right / all |\n|---|---|---|")
    for cat, c in counts.items():
        print(f"| {cat} | {c[True, True]} / {c[True, True] + c[True, False]} "
              f"| {c[False, True]} / {c[False, True] + c[False, False]} |")  # fmt: skip
    for fmt in ("raw", "chat"):
        rs = [r for r in rows if r["format"] == fmt]
        flipped = [r for r in rs if not r["stable"]]
        cap = sum(r["correct"] for r in flipped) / max(len(flipped), 1)
        y = [r["correct"] for r in rs]
        before = auroc([r["confidence"] for r in rs], y)
        capped = [r["confidence"] if r["stable"] else min(r["confidence"], cap) for r in rs]
        print(f"{fmt}: {len(rs)} answers, flipped capped at {cap:.2f}: "
              f"AUROC {before:.3f} -> {auroc(capped, y):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
