"""The reasoning format of the evaluation (``benchmarks/eval.py --reason``): the model is asked
to reason before it answers, so CoT-decoding can be measured where it was designed to work
(a larger ``--model``; the embedded 135M model gains little).

- chat items: the prompt's own closing instruction ("Answer with the number only.") is dropped
  and the model is asked to think step by step and end with a line "Answer: ...", which every
  reader takes (``answers.py``: the answer marker);
- raw items (plain completion): the item's question (its last "Q: ..." line, or its last line
  when that is an equation to complete) follows three worked examples written out step by step,
  each ending "So the answer is N."; the completion stops at the next "Q:" or a blank line.

``contains`` items are graded on the whole response as in every format, so a reasoning that
names the answer on its way counts: read their rows with that in mind.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

INSTRUCTION = (
    'Think step by step, then write the final answer on its own last line as "Answer: ...".'
)
_CLOSING = re.compile(r"\s*Answer with [^\n]*$", re.IGNORECASE)
FEWSHOT = (
    "Q: What is 6 + 7?\n"
    "A: 6 + 4 = 10, and 3 more is 13. So the answer is 13.\n\n"
    "Q: Which is larger, 58 or 85?\n"
    "A: 58 has 5 tens and 85 has 8 tens. 8 tens is more, so 85 is larger. So the answer is 85.\n\n"
    "Q: Mia has 8 pens and gives away 5. How many pens are left?\n"
    "A: She starts with 8 and 5 go away: 8 - 5 = 3. So the answer is 3.\n\n"
)
RAW_STOPS = ("\nQ:", "\n\n")


def question_of(raw_prompt: str) -> str:
    """The question a raw few-shot prompt ends with: its last "Q: ..." line, else its last
    line ("2 + 9 =" reads "What is 2 + 9?")."""
    lines = [ln.strip() for ln in raw_prompt.strip().splitlines() if ln.strip()]
    if not lines:
        raise ValueError("empty prompt")
    asked = [ln for ln in lines if ln.startswith("Q:")]
    if asked:
        return asked[-1][2:].strip()
    last = lines[-1]
    return f"What is {last.rstrip('=').strip()}?" if last.endswith("=") else last


def reasoning_prompt(prompt: str, fmt: str) -> str:
    """The item's prompt in the reasoning format (see the module docstring)."""
    if fmt == "raw":
        return f"{FEWSHOT}Q: {question_of(prompt)}\nA:"
    return f"{_CLOSING.sub('', prompt.rstrip())}\n{INSTRUCTION}"


def to_reasoning(item: Any) -> Any:
    """The harness ``Item`` in the reasoning format (raw items stop at the next question)."""
    stops = RAW_STOPS if item.format == "raw" else ()
    return replace(item, prompt=reasoning_prompt(item.prompt, item.format), stops=stops)
