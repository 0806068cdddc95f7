"""Build the DEV split used by the policy search: items 21-60 of each core set.

``data/eval/core.csv`` holds items 1-20 of each of the six sets (the TEST split); the dev split
is the next 40 of each, disjoint from it. Same columns, rows copied verbatim.

    uv run benchmarks/make_dev_split.py            # writes data/eval/dev.csv
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = ("add_1digit", "mul_1digit", "larger_2digit", "word_problem", "capital", "capital_choice")
TEST_N, DEV_N = 20, 40


def rows(name: str) -> tuple[list[str], list[dict[str, str]]]:
    with (ROOT / "data/eval" / f"{name}.csv").open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "data/eval/dev.csv"
    with (ROOT / "data/eval/core.csv").open(newline="", encoding="utf-8") as f:
        core = {r["prompt"] for r in csv.DictReader(f)}
    fields, dev = None, []
    for name in SETS:
        fields, data = rows(name)
        if len(data) < TEST_N + DEV_N:
            raise SystemExit(f"{name}.csv has {len(data)} items, need {TEST_N + DEV_N}")
        if {r["prompt"] for r in data[:TEST_N]} - core:
            raise SystemExit(f"core.csv is not the first {TEST_N} items of {name}.csv")
        dev += data[TEST_N : TEST_N + DEV_N]
    overlap = sum(r["prompt"] in core for r in dev)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(dev)
    print(f"wrote {out}: {len(dev)} items ({overlap} prompts also in core.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
