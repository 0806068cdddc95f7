"""A larger, more varied calibration set for the answer confidence, from the DEVELOPMENT half of
the question space only: task types that are in neither split (so the map is chosen by how it
does on a kind of question it was not fitted on, as a user's new task would be), in the two
formats of ``data/eval/`` (few-shot raw text, zero-shot chat).

Every question is drawn through ``data/eval/make_sets.py``'s ``side``: a sum, a product, a
comparison, a subtraction or a country that belongs to the test split is never asked or shown
(``tests/test_confidence_fit.py`` reads the questions back and checks it against core.csv).

    uv run benchmarks/confidence_calib_dev.py  # results/confidence_calib{,2}_{raw,chat}.csv
"""

from __future__ import annotations

import csv
import importlib.util
import random
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = {
    f"{batch}{fmt}": ROOT / "benchmarks" / "results" / f"confidence_calib{batch}_{fmt}.csv"
    for batch in ("", "2")
    for fmt in ("raw", "chat")
}
_spec = importlib.util.spec_from_file_location("make_sets", ROOT / "data" / "eval" / "make_sets.py")
assert _spec and _spec.loader
ms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ms)
SEED = "confidence-calib"
N_RAW, N_CHAT = 40, 30  # items per task type


def sub_pair(r: random.Random) -> ms.Question:
    a, b = r.randint(2, 9), r.randint(1, 8)
    a, b = max(a, b + 1), min(a, b)
    return f"sub:{a},{b}", (f"{a} - {b} =", str(a - b), str(a - b))


def add2_pair(r: random.Random) -> ms.Question:
    a, b = r.randint(11, 49), r.randint(2, 9)
    return f"add:{b},{a}", (f"{a} + {b} =", str(a + b), str(a + b))


def smaller_pair(r: random.Random) -> ms.Question:
    a, b = r.sample(range(10, 100), 2)
    text = f"Q: Which is smaller, {a} or {b}?\nA:"
    return f"larger:{min(a, b)},{max(a, b)}", (text, str(min(a, b)), str(min(a, b)))


def double_pair(r: random.Random) -> ms.Question:
    a = r.randint(6, 49)
    return f"add:{a},{a}", (f"Q: What is double {a}?\nA:", str(2 * a), str(2 * a))


def capital_raw(rng: random.Random, n: int) -> list[ms.Row]:
    """Few-shot raw recall: four solved capitals, then a fifth (all of dev's countries)."""
    pool = ms.countries("dev")
    rows = []
    for _ in range(n):
        shots = rng.sample(pool, ms.SHOTS + 1)
        q = shots.pop()
        text = "".join(
            f"Q: What is the capital of {c}?\nA: {ms.CAPITALS[c].split('|')[0]}\n" for c in shots
        )
        text += f"Q: What is the capital of {q}?\nA:"
        rows.append(ms.row(text, ms.CAPITALS[q], "contains", "capital_raw", "raw"))
    return rows


def raw(pair: Callable[[random.Random], ms.Question], cat: str) -> Callable[..., list[ms.Row]]:
    return lambda rng, n: [ms.few_shot(rng, pair, cat, "dev") for _ in range(n)]


def chat(pair: Callable[[random.Random], ms.Question], template: str, cat: str, kind: str):
    """Zero-shot chat: the question of a dev pair in a sentence (``{q}``: its question text)."""

    def make(rng: random.Random, n: int) -> list[ms.Row]:
        out = []
        for _ in range(n):
            q, _, answer = ms.draw(rng, pair, "dev")
            prompt = template.format(q=q.removeprefix("Q: ").removesuffix("\nA:").rstrip(" ="))
            out.append(ms.row(prompt, answer, kind, cat, "chat"))
        return out

    return make


def decimal_pair(r: random.Random) -> ms.Question:
    """Decimal comparison with a trap: 0.9 vs 0.11 (more digits is not larger)."""
    a, b = r.randint(1, 9), r.randint(10, 99)
    x, y = f"0.{a}", f"0.{b}"
    pair = (x, y) if r.random() < 0.5 else (y, x)
    bigger = x if a / 10 > b / 100 else y
    return f"decimal:{sorted(pair)}", (f"Which is larger, {pair[0]} or {pair[1]}?", bigger, bigger)


def country_of(rng: random.Random, n: int) -> list[ms.Row]:
    pool = ms.countries("dev")
    rng.shuffle(pool)
    return [
        ms.row(
            f"Which country has the capital {ms.CAPITALS[c].split('|')[0]}? "
            "Answer with the country name only.",
            c,
            "contains",
            "country_of",
            "chat",
        )
        for c in pool[:n]
    ]


def yesno_pair(r: random.Random) -> ms.Question:
    a, b = r.sample(range(10, 100), 2)
    return f"larger:{min(a, b)},{max(a, b)}", (
        f"Is {a} larger than {b}?",
        "",
        "yes" if a > b else "no",
    )


RAW: dict[str, Callable[[random.Random, int], list[ms.Row]]] = {
    "sub_1digit": raw(sub_pair, "sub_1digit"),
    "add_2digit": raw(add2_pair, "add_2digit"),
    "smaller_2digit": raw(smaller_pair, "smaller_2digit"),
    "double_raw": raw(double_pair, "double_raw"),
    "capital_raw": capital_raw,
}
CHAT: dict[str, Callable[[random.Random, int], list[ms.Row]]] = {
    "decimal_chat": chat(
        decimal_pair, "{q} Answer with the number only.", "decimal_chat", "numeric"
    ),
    "sub_chat": chat(sub_pair, "What is {q}? Answer with the number only.", "sub_chat", "numeric"),
    "add2_chat": chat(
        add2_pair, "What is {q}? Answer with the number only.", "add2_chat", "numeric"
    ),
    "country_of": country_of,
    "yesno_chat": chat(yesno_pair, "{q} Answer yes or no.", "yesno_chat", "yesno"),
}


def mul2_pair(r: random.Random) -> ms.Question:
    a, b = r.randint(11, 30), r.randint(2, 5)
    return f"mul:{b},{a}", (f"{a} x {b} =", str(a * b), str(a * b))


def next_pair(r: random.Random) -> ms.Question:
    a = r.randint(10, 98)
    return f"next:{a}", (f"Q: What number comes after {a}?\nA:", str(a + 1), str(a + 1))


def max_pair(r: random.Random) -> ms.Question:
    a, b = r.sample(range(1, 10), 2)
    return f"max:{min(a, b)},{max(a, b)}", (f"max({a}, {b}) =", str(max(a, b)), str(max(a, b)))


def half_pair(r: random.Random) -> ms.Question:
    a = 2 * r.randint(6, 49)
    return f"half:{a}", (f"Q: What is half of {a}?\nA:", str(a // 2), str(a // 2))


def mul_chat_pair(r: random.Random) -> ms.Question:
    a, b = r.randint(2, 9), r.randint(2, 9)
    return f"mul:{min(a, b)},{max(a, b)}", (f"{a} x {b}", str(a * b), str(a * b))


# A second batch (more kinds of question for leave-one-category-out), drawn the same way.
RAW2: dict[str, Callable[[random.Random, int], list[ms.Row]]] = {
    "mul_2x1": raw(mul2_pair, "mul_2x1"),
    "next_raw": raw(next_pair, "next_raw"),
    "max_1digit": raw(max_pair, "max_1digit"),
    "half_raw": raw(half_pair, "half_raw"),
}
CHAT2: dict[str, Callable[[random.Random, int], list[ms.Row]]] = {
    "smaller_chat": chat(
        smaller_pair, "{q} Answer with the number only.", "smaller_chat", "numeric"
    ),
    "mul_chat": chat(
        mul_chat_pair, "What is {q}? Answer with the number only.", "mul_chat", "numeric"
    ),
    "next_chat": chat(next_pair, "{q} Answer with the number only.", "next_chat", "numeric"),
}


def build() -> dict[str, list[ms.Row]]:
    """The calibration items by file key ("raw", "chat", "2raw", "2chat"; deterministic: one
    seeded draw per task)."""
    out = {}
    for batch, tasks in (("", (RAW, CHAT)), ("2", (RAW2, CHAT2))):
        for fmt, fns, n in (("raw", tasks[0], N_RAW), ("chat", tasks[1], N_CHAT)):
            out[f"{batch}{fmt}"] = [
                r for k, fn in fns.items() for r in fn(random.Random(f"{SEED}-{k}"), n)
            ]
    return out


if __name__ == "__main__":
    for key, rows in build().items():
        with OUT[key].open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {OUT[key]} ({len(rows)} items)")
