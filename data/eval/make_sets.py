"""Write the project's evaluation sets (deterministic: same script -> byte-identical CSVs).

    uv run data/eval/make_sets.py            # rewrites data/eval/*.csv

Every item has a verifiable answer computed here (arithmetic, comparisons) or taken from a short
fact table written below (capital cities). Columns: prompt, answer, kind, category. Prompts are
one user message; the harness applies the chat template. Some prompts carry their own few-shot
examples in the text, because the 135M default model follows a shown format far better than an
instruction (see data/eval/README.md for the pilot scores that chose these tasks).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
SEED = 20240601

# Country -> capital. Common, unambiguous pairs (one official capital, spelled the usual way).
CAPITALS = {
    "France": "Paris",
    "Germany": "Berlin",
    "Italy": "Rome",
    "Spain": "Madrid",
    "Portugal": "Lisbon",
    "Japan": "Tokyo",
    "China": "Beijing",
    "Russia": "Moscow",
    "Egypt": "Cairo",
    "Greece": "Athens",
    "Ireland": "Dublin",
    "Norway": "Oslo",
    "Sweden": "Stockholm",
    "Finland": "Helsinki",
    "Denmark": "Copenhagen",
    "Poland": "Warsaw",
    "Austria": "Vienna",
    "Hungary": "Budapest",
    "Belgium": "Brussels",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Argentina": "Buenos Aires",
    "Mexico": "Mexico City",
    "Canada": "Ottawa",
    "Australia": "Canberra",
    "India": "New Delhi",
    "Thailand": "Bangkok",
    "South Korea": "Seoul",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Cuba": "Havana",
    "Czech Republic": "Prague",
    "Romania": "Bucharest",
    "Ukraine": "Kyiv|Kiev",
    "Turkey": "Ankara",
    "Vietnam": "Hanoi",
    "Philippines": "Manila",
    "Indonesia": "Jakarta",
    "Colombia": "Bogota|Bogotá",
    "Venezuela": "Caracas",
    "Nigeria": "Abuja",
    "Ethiopia": "Addis Ababa",
    "Morocco": "Rabat",
    "Saudi Arabia": "Riyadh",
    "Pakistan": "Islamabad",
    "Bangladesh": "Dhaka",
    "New Zealand": "Wellington",
    "Switzerland": "Bern|Berne",
    "Netherlands": "Amsterdam",
    "Brazil": "Brasilia|Brasília",
    "Bulgaria": "Sofia",
    "Serbia": "Belgrade",
    "Croatia": "Zagreb",
    "Iceland": "Reykjavik|Reykjavík",
    "Afghanistan": "Kabul",
    "Syria": "Damascus",
    "Lebanon": "Beirut",
    "Jordan": "Amman",
    "Nepal": "Kathmandu",
}

NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Max", "Zoe", "Leo", "Emma", "Jack", "Ruby"]
THINGS = ["apples", "pencils", "books", "marbles", "cookies", "stickers", "toy cars", "shells"]

Row = dict[str, str]
Pair = tuple[str, str, str]  # (question line(s), answer as shown in an example, answer)
SHOTS = 4


def few_shot(rng: random.Random, fmt: Callable[[random.Random], Pair], category: str) -> Row:
    """A raw-text completion prompt: ``SHOTS`` solved examples, then the question.

    Each example is "<question> <shown answer>" on its own line(s); the model completes the
    last line, and the harness stops at the line end (format ``raw``: no chat template).
    """
    shots = [fmt(rng) for _ in range(SHOTS)]
    question, _, answer = fmt(rng)
    text = "".join(f"{q} {shown}\n" for q, shown, _ in shots) + question
    return row(text, answer, "numeric", category, "raw")


def add_pair(r: random.Random) -> Pair:
    a, b = r.randint(1, 9), r.randint(1, 9)
    return f"{a} + {b} =", str(a + b), str(a + b)


def mul_pair(r: random.Random) -> Pair:
    a, b = r.randint(2, 5), r.randint(2, 5)
    return f"{a} x {b} =", str(a * b), str(a * b)


def larger_pair(r: random.Random) -> Pair:
    a, b = r.sample(range(10, 100), 2)
    return f"Q: Which is larger, {a} or {b}?\nA:", str(max(a, b)), str(max(a, b))


def word_pair(r: random.Random) -> Pair:
    """One-step addition or subtraction story; examples show the sum ("A: 3 + 4 = 7")."""
    name, thing = r.choice(NAMES), r.choice(THINGS)
    a, b = r.randint(2, 9), r.randint(1, 9)
    if r.random() < 0.5:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have?"
        return f"Q: {q}\nA:", f"{a} + {b} = {a + b}", str(a + b)
    a, b = max(a, b) + 1, min(a, b)
    q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
    return f"Q: {q}\nA:", f"{a} - {b} = {a - b}", str(a - b)


def capital(rng: random.Random, n: int) -> list[Row]:
    """Short factual recall, zero-shot chat: the capital of a country."""
    countries = sorted(CAPITALS)
    rng.shuffle(countries)
    rows = []
    for country in countries[:n]:
        prompt = f"What is the capital of {country}? Answer with the city name only."
        rows.append(row(prompt, CAPITALS[country], "contains", "capital", "chat"))
    return rows


def capital_choice(rng: random.Random, n: int) -> list[Row]:
    """Two-option multiple choice on capitals, zero-shot chat (right answer first half the time)."""
    countries = sorted(CAPITALS)
    rng.shuffle(countries)
    rows = []
    for i, country in enumerate(countries[:n]):
        right = CAPITALS[country].split("|")[0]
        wrong = rng.choice([c.split("|")[0] for k, c in sorted(CAPITALS.items()) if k != country])
        options = [right, wrong] if i % 2 == 0 else [wrong, right]
        letter = "A" if options[0] == right else "B"
        prompt = (
            f"What is the capital of {country}?\nA) {options[0]}\nB) {options[1]}\n"
            "Answer with the letter A or B."
        )
        rows.append(row(prompt, letter, "choice", "capital_choice", "chat"))
    return rows


def word_problem_chat(rng: random.Random, n: int) -> list[Row]:
    """The word problems as zero-shot chat questions (for larger models; ~0% on the 135M)."""
    rows = []
    for _ in range(n):
        q, _, a = word_pair(rng)
        rows.append(row(q.removeprefix("Q: ").removesuffix("\nA:"), a, "numeric", "word_chat"))
    return rows


def row(prompt: str, answer: str, kind: str, category: str, fmt: str = "chat") -> Row:
    return {"prompt": prompt, "answer": answer, "kind": kind, "category": category, "format": fmt}


def raw_task(pair: Callable[[random.Random], Pair], category: str):
    return lambda rng, n: [few_shot(rng, pair, category) for _ in range(n)]


# name -> generator(rng, n). Each task draws from its own seeded generator, so adding a task or
# changing one set's size changes no other item.
TASKS: dict[str, Callable[[random.Random, int], list[Row]]] = {
    "add_1digit": raw_task(add_pair, "add_1digit"),
    "mul_1digit": raw_task(mul_pair, "mul_1digit"),
    "larger_2digit": raw_task(larger_pair, "larger_2digit"),
    "word_problem": raw_task(word_pair, "word_problem"),
    "capital": capital,
    "capital_choice": capital_choice,
}
CORE_PER_TASK = 20  # core.csv: the first 20 items of each task above (120 items)
EXTRA: dict[str, Callable[[random.Random, int], list[Row]]] = {
    "word_problem_chat": word_problem_chat,
}


def write(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build(per_task: int = 60) -> dict[str, list[Row]]:
    """Every set by file stem: one per task, ``core`` (a slice of each), and the extras."""
    sets = {name: fn(random.Random(f"{SEED}-{name}"), per_task) for name, fn in TASKS.items()}
    sets["core"] = [r for rows in sets.values() for r in rows[:CORE_PER_TASK]]
    for name, fn in EXTRA.items():
        sets[name] = fn(random.Random(f"{SEED}-{name}"), per_task)
    return sets


def main() -> None:
    for name, rows in build().items():
        write(HERE / f"{name}.csv", rows)
        print(f"wrote {HERE / name}.csv ({len(rows)} items)")


if __name__ == "__main__":
    main()
