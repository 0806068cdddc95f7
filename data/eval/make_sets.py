"""Write the project's evaluation sets (deterministic: same script -> byte-identical CSVs).

    uv run data/eval/make_sets.py            # rewrites data/eval/*.csv

Every item has a verifiable answer computed here (arithmetic, comparisons) or taken from a short
fact table written below (capital cities).

Two splits that share no question: ``core.csv`` (TEST, reported) and ``dev.csv`` (DEVELOPMENT,
where every choice is made). A question is its operands (``3 + 5`` and ``5 + 3`` are one
question, and so is a word problem that adds them), the pair of a comparison, the operands of a
subtraction story, or the country of a capital item; each question belongs to one split
(``side``), and every item of a split (its solved examples too, and the options of a multiple
choice) is drawn from that split's questions alone. Each task's file holds its 20 TEST items,
then its 40 DEV items. Columns: prompt, answer, kind, category, format. Prompts are
one user message; the harness applies the chat template. Some prompts carry their own few-shot
examples in the text, because the 135M default model follows a shown format far better than an
instruction (see data/eval/README.md for the pilot scores that chose these tasks).
"""

from __future__ import annotations

import csv
import hashlib
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
    "Ghana": "Accra",
    "Senegal": "Dakar",
    "Tunisia": "Tunis",
    "Algeria": "Algiers",
    "Sudan": "Khartoum",
    "Uganda": "Kampala",
    "Zimbabwe": "Harare",
    "Zambia": "Lusaka",
    "Angola": "Luanda",
    "Ecuador": "Quito",
    "Uruguay": "Montevideo",
    "Latvia": "Riga",
    "Lithuania": "Vilnius",
    "Estonia": "Tallinn",
    "Slovakia": "Bratislava",
    "Slovenia": "Ljubljana",
    "Albania": "Tirana",
    "Armenia": "Yerevan",
    "Belarus": "Minsk",
    "Qatar": "Doha",
}

NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Max", "Zoe", "Leo", "Emma", "Jack", "Ruby"]
THINGS = ["apples", "pencils", "books", "marbles", "cookies", "stickers", "toy cars", "shells"]

Row = dict[str, str]
Pair = tuple[str, str, str]  # (question line(s), answer as shown in an example, answer)
Question = tuple[str, Pair]  # (the question's identity, its text)
Split = str  # "test" | "dev"
SHOTS = 4
TEST_PER_TASK, DEV_PER_TASK = 20, 40  # items per task in core.csv (TEST) and dev.csv (DEV)


def _hash(key: str) -> bytes:
    return hashlib.sha256(f"{SEED}:{key}".encode()).digest()


def _halves(keys: list[str]) -> dict[str, Split]:
    """A finite question space cut in two equal halves, in the order of the keys' hashes."""
    ranked = sorted(keys, key=_hash)
    return {k: "test" if i < len(ranked) // 2 else "dev" for i, k in enumerate(ranked)}


# Small question spaces are halved exactly (10 multiplications would split unevenly by chance).
FINITE = {
    **_halves([f"add:{a},{b}" for a in range(1, 10) for b in range(a, 10)]),
    **_halves([f"mul:{a},{b}" for a in range(2, 6) for b in range(a, 6)]),
    **_halves([f"capital:{c}" for c in CAPITALS]),
}


def side(key: str) -> Split:
    """The split a question belongs to: half of a small space each, else a fixed hash."""
    return FINITE.get(key) or ("test" if _hash(key)[0] % 2 == 0 else "dev")


def draw(rng: random.Random, fmt: Callable[[random.Random], Question], split: Split) -> Pair:
    """A question of ``split``: draw until one belongs to it."""
    while True:
        key, pair = fmt(rng)
        if side(key) == split:
            return pair


def few_shot(rng: random.Random, fmt: Callable[[random.Random], Question], category: str,
             split: Split) -> Row:  # fmt: skip
    """A raw-text completion prompt: ``SHOTS`` solved examples, then the question, all of them
    questions of ``split``.

    Each example is "<question> <shown answer>" on its own line(s); the model completes the
    last line, and the harness stops at the line end (format ``raw``: no chat template).
    """
    shots = [draw(rng, fmt, split) for _ in range(SHOTS)]
    question, _, answer = draw(rng, fmt, split)
    text = "".join(f"{q} {shown}\n" for q, shown, _ in shots) + question
    return row(text, answer, "numeric", category, "raw")


def add_pair(r: random.Random) -> Question:
    a, b = r.randint(1, 9), r.randint(1, 9)
    return f"add:{min(a, b)},{max(a, b)}", (f"{a} + {b} =", str(a + b), str(a + b))


def mul_pair(r: random.Random) -> Question:
    a, b = r.randint(2, 5), r.randint(2, 5)
    return f"mul:{min(a, b)},{max(a, b)}", (f"{a} x {b} =", str(a * b), str(a * b))


def larger_pair(r: random.Random) -> Question:
    a, b = r.sample(range(10, 100), 2)
    text = f"Q: Which is larger, {a} or {b}?\nA:"
    return f"larger:{min(a, b)},{max(a, b)}", (text, str(max(a, b)), str(max(a, b)))


def word_pair(r: random.Random) -> Question:
    """One-step addition or subtraction story; examples show the sum ("A: 3 + 4 = 7")."""
    name, thing = r.choice(NAMES), r.choice(THINGS)
    a, b = r.randint(2, 9), r.randint(1, 9)
    if r.random() < 0.5:
        q = f"{name} has {a} {thing} and gets {b} more. How many {thing} does {name} have?"
        # the same question as the sum a + b (the examples show it): one identity, one split
        return f"add:{min(a, b)},{max(a, b)}", (f"Q: {q}\nA:", f"{a} + {b} = {a + b}", str(a + b))
    a, b = max(a, b) + 1, min(a, b)
    q = f"{name} has {a} {thing} and gives away {b}. How many {thing} are left?"
    return f"sub:{a},{b}", (f"Q: {q}\nA:", f"{a} - {b} = {a - b}", str(a - b))


def countries(split: Split) -> list[str]:
    """The countries of ``split`` (capital items: the country is the question)."""
    return [c for c in sorted(CAPITALS) if side(f"capital:{c}") == split]


def capital(rng: random.Random, n: int, split: Split) -> list[Row]:
    """Short factual recall, zero-shot chat: the capital of a country."""
    pool = countries(split)
    rng.shuffle(pool)
    rows = []
    for country in pool[:n]:
        prompt = f"What is the capital of {country}? Answer with the city name only."
        rows.append(row(prompt, CAPITALS[country], "contains", "capital", "chat"))
    return rows


def capital_choice(rng: random.Random, n: int, split: Split) -> list[Row]:
    """Two-option multiple choice on capitals, zero-shot chat (right answer first half the
    time); the wrong option is another country's capital of the same split."""
    pool = countries(split)
    order = pool[:]
    rng.shuffle(order)
    rows = []
    for i, country in enumerate(order[:n]):
        right = CAPITALS[country].split("|")[0]
        wrong = rng.choice([CAPITALS[k].split("|")[0] for k in pool if k != country])
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
        _, (q, _, a) = word_pair(rng)
        rows.append(row(q.removeprefix("Q: ").removesuffix("\nA:"), a, "numeric", "word_chat"))
    return rows


def row(prompt: str, answer: str, kind: str, category: str, fmt: str = "chat") -> Row:
    return {"prompt": prompt, "answer": answer, "kind": kind, "category": category, "format": fmt}


def raw_task(pair: Callable[[random.Random], Question], category: str):
    return lambda rng, n, split: [few_shot(rng, pair, category, split) for _ in range(n)]


# name -> generator(rng, n, split). Each task and split draws from its own seeded generator, so
# adding a task or changing one set's size changes no other item.
TASKS: dict[str, Callable[[random.Random, int, Split], list[Row]]] = {
    "add_1digit": raw_task(add_pair, "add_1digit"),
    "mul_1digit": raw_task(mul_pair, "mul_1digit"),
    "larger_2digit": raw_task(larger_pair, "larger_2digit"),
    "word_problem": raw_task(word_pair, "word_problem"),
    "capital": capital,
    "capital_choice": capital_choice,
}
EXTRA: dict[str, Callable[[random.Random, int], list[Row]]] = {
    "word_problem_chat": word_problem_chat,
}


def write(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def build() -> dict[str, list[Row]]:
    """Every set by file stem: one per task (its TEST items, then its DEV items), ``core``
    (TEST: every task's test items), ``dev`` (DEV: every task's dev items), and the extras."""
    split = {
        s: {name: fn(random.Random(f"{SEED}-{name}-{s}"), n, s) for name, fn in TASKS.items()}
        for s, n in (("test", TEST_PER_TASK), ("dev", DEV_PER_TASK))
    }
    sets = {name: split["test"][name] + split["dev"][name] for name in TASKS}
    sets["core"] = [r for rows in split["test"].values() for r in rows]
    sets["dev"] = [r for rows in split["dev"].values() for r in rows]
    for name, fn in EXTRA.items():
        sets[name] = fn(random.Random(f"{SEED}-{name}"), 60)
    return sets


def main() -> None:
    for name, rows in build().items():
        write(HERE / f"{name}.csv", rows)
        print(f"wrote {HERE / name}.csv ({len(rows)} items)")


if __name__ == "__main__":
    main()
