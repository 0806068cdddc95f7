"""Zero-shot chat versions of the development split's raw questions, for fitting the answer
confidence on chat answers the model often gets wrong (the shipped chat sets are mostly easy
for it). Dev only: the questions are those of ``data/eval/dev.csv``; none is in the test split.

    uv run benchmarks/confidence_chat_dev.py     # writes benchmarks/results/confidence_chat_dev.csv
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "confidence_chat_dev.csv"


def rows() -> list[dict[str, str]]:
    out = []
    for r in csv.DictReader((ROOT / "data" / "eval" / "dev.csv").open(encoding="utf-8")):
        last = r["prompt"].strip().splitlines()[-1]
        if r["category"] == "larger_2digit":
            qs = re.findall(r"Which is larger, \d+ or \d+\?", r["prompt"])
            prompt = f"{qs[-1]} Answer with the number only." if qs else None
        elif r["category"] == "add_1digit":
            prompt = f"What is {last.rstrip(' =')}? Answer with the number only."
        else:
            continue
        if prompt:
            cat = r["category"].split("_")[0] + "_chat"
            out.append({"prompt": prompt, "answer": r["answer"], "kind": "numeric",
                        "category": cat, "format": "chat"})  # fmt: skip
    return out


if __name__ == "__main__":
    items = rows()
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", "answer", "kind", "category", "format"])
        w.writeheader()
        w.writerows(items)
    print(f"wrote {OUT} ({len(items)} items)")
