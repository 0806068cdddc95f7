"""Checks an answer can fail on its own text, before any score: pure functions of strings.

- ``wrong_arithmetic``: the text up to the answer states a false equation ("7 + 7 = 12"): the
  answer contradicts its own working (on dev, 1 of 55 such answers was right).
- ``copied``: the answer is a number of its question ("2 x 2 =" -> "2"), where the question
  does not ask for one: a copy, not a computation. In a few-shot prompt, when no solved
  example's answer is a number of its own question ("7 + 1 = 8"; on dev 0 of 25 such raw
  answers were right, in 6 of 13 kinds); without examples (a chat question), when the
  question offers no numbers to choose from ("9.9 or 9.11", listed options; on dev 4 of 66
  such chat answers were right, in 6 of 13 kinds). Comparisons ("Which is larger, 62 or
  77?") and word problems whose examples repeat a number are never flagged.

The confidence map caps an answer that fails either at the accuracy such answers had on dev
(``ConfidenceModel.failed_check``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from ..answers import parse_options

# "a op b = c" with plain numbers (not part of "1,000", "2.5.1" or "3/4"): the model's working.
_EQUATION = re.compile(
    r"(?<![\w.,/])(-?\d+(?:\.\d+)?)\s*([-+*x×/])\s*(-?\d+(?:\.\d+)?)\s*=\s*(-?\d+(?:\.\d+)?)(?![.,/]?\d)"
)
# A whole number or decimal, not part of a longer one ("3." ending a sentence is 3)
_PLAIN_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?(?!\.?\d)")
# Numbers offered to choose from: "9.9 or 9.11", "12, 15 or 20" (or listed options)
_ALTERNATIVES = re.compile(r"\d\s*,?\s+or\s+-?\d")


def wrong_arithmetic(text: str) -> float:
    """1.0 when ``text`` states a one-operation equation that does not hold, else 0.0. A
    result written with decimals holds when it is the value rounded or cut there ("10 / 3 =
    3.33"); one without must be exact ("10 / 3 = 3" does not hold)."""
    for m in _EQUATION.finditer(text):
        a, op, b, c = float(m[1]), m[2], float(m[3]), float(m[4])
        value = {"+": a + b, "-": a - b, "/": a / b if b else math.nan}.get(op, a * b)
        decimals = len(m[4].partition(".")[2])
        last_place = 10.0**-decimals if decimals else 0.0
        if not (math.isclose(value, c, rel_tol=1e-9, abs_tol=1e-9) or abs(value - c) < last_place):
            return 1.0
    return 0.0


def solved_examples(prompt: str) -> tuple[str, list[tuple[str, str]]]:
    """The final question of a few-shot prompt and its solved examples ``(question, answer)``.

    The prompt's last line ends with a cue ("7 + 1 =", "A:"); an earlier line that holds the
    cue with text after it is an example, its answer that text; a question is the text before
    the cue on its line, or the line before when there is none ("Q: ...\\nA: 77")."""
    lines = prompt.split("\n")
    words = lines[-1].split()
    if not words:
        return "", []
    cue = words[-1]

    def question(i: int, before: str) -> str:
        return before.strip() or (lines[i - 1] if i > 0 else "")

    examples = []
    for i, line in enumerate(lines[:-1]):
        if cue in line and (answer := line[line.rindex(cue) + len(cue) :].strip()):
            examples.append((question(i, line[: line.rindex(cue)]), answer))
    last = lines[-1].rstrip()
    return question(len(lines) - 1, last[: len(last) - len(cue)]), examples


def _holds_number(text: str, answer: str) -> bool:
    """Whether the last number of ``answer`` is one of the numbers of ``text``."""
    nums = _PLAIN_NUMBER.findall(answer)
    return bool(nums) and nums[-1] in _PLAIN_NUMBER.findall(text)


def copied(prompt: str, answer: str) -> float:
    """1.0 when ``answer``'s number is one of its question's numbers and the prompt does not
    ask for one (see the module docstring), else 0.0. ``prompt``: a raw prompt, or a chat
    request's last user message (``question_text``)."""
    if not _PLAIN_NUMBER.search(answer):
        return 0.0
    question, examples = solved_examples(prompt)
    if not examples:
        offered = _ALTERNATIVES.search(prompt) or parse_options(prompt)
        return 0.0 if offered else float(_holds_number(prompt, answer))
    if any(_holds_number(q, a) for q, a in examples):
        return 0.0
    return float(_holds_number(question, answer))


def question_text(tokenizer: Any, ids: list[int], fmt: str) -> str:
    """What ``copied`` reads of a prompt: a raw prompt's text; of a chat prompt, the last turn
    before the reply (the text between the last control tokens that holds more than a role
    name: "user\nWhat is 7 + 3?"), so numbers of earlier turns do not count."""
    control = tokenizer.control_ids
    if fmt == "raw" or not control:
        return tokenizer.decode(ids, skip_special_tokens=True)
    cuts = [i for i, t in enumerate(ids) if t in control]
    for start, end in reversed(list(zip([-1, *cuts], [*cuts, len(ids)], strict=True))):
        turn = tokenizer.decode(ids[start + 1 : end])  # from the end: a few decodes, not all
        if len(turn.split(None, 1)) > 1:
            return turn
    return ""


def failed(feats: dict[str, float | None]) -> bool:
    """Whether an answer's features record a failed check (the map then caps it)."""
    return bool(feats.get("wrong_arithmetic") or feats.get("copied"))
