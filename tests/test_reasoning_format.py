"""The evaluation's reasoning format (``eval/reasoning.py``, ``benchmarks/eval.py --reason``)."""

from __future__ import annotations

from pathlib import Path

from mlx_entropix.answers import extracted, match
from mlx_entropix.eval.harness import Item, engine_generate_fn
from mlx_entropix.eval.main import main
from mlx_entropix.eval.reasoning import (
    FEWSHOT,
    INSTRUCTION,
    RAW_STOPS,
    question_of,
    reasoning_prompt,
    to_reasoning,
)

import pytest


@pytest.mark.parametrize(
    ("prompt", "question"),
    [
        ("2 + 2 = 4\n9 + 5 = 14\n2 + 9 =", "What is 2 + 9?"),
        ("2 x 4 = 8\n2 x 2 =", "What is 2 x 2?"),
        ("Q: Which is larger, 62 or 77?\nA: 77\nQ: Which is larger, 73 or 89?\nA:",
         "Which is larger, 73 or 89?"),
        ("Q: Ann has 6 pens and gives away 3. How many are left?\nA: 6 - 3 = 3\n"
         "Q: Tom has 3 cups and gives away 1. How many are left?\nA:",
         "Tom has 3 cups and gives away 1. How many are left?"),
    ],
)  # fmt: skip
def test_a_raw_item_is_asked_its_own_last_question_after_worked_examples(prompt, question):
    assert question_of(prompt) == question
    text = reasoning_prompt(prompt, "raw")
    assert text == f"{FEWSHOT}Q: {question}\nA:"
    # every worked example ends the way the numeric reader takes its answer from
    for example in FEWSHOT.strip().split("\n\n"):
        assert "So the answer is" in example and extracted(example, "numeric") is not None


def test_a_chat_item_is_asked_to_reason_then_answer_on_a_marked_line():
    prompt = "What is the capital of Denmark? Answer with the city name only."
    assert reasoning_prompt(prompt, "chat") == f"What is the capital of Denmark?\n{INSTRUCTION}"
    choice = "What is the capital of Ethiopia?\nA) Addis Ababa\nB) Tokyo\nAnswer with the letter."
    assert reasoning_prompt(choice, "chat").endswith("B) Tokyo\n" + INSTRUCTION)
    # the readers take the marked line, not the numbers or letters of the reasoning before it
    assert match("9 + 1 = 10, so 2 + 9 = 11 - 0.\nAnswer: 11", "11", "numeric")
    assert not match("9 + 1 = 10, so 2 + 9 = 12.\nAnswer: 11", "12", "numeric")
    assert match("B) Tokyo is in Japan, not Ethiopia.\nAnswer: A", "A", "choice")


def test_to_reasoning_sets_the_budget_free_stops():
    raw = to_reasoning(Item(0, "2 x 2 =", "4", "numeric", format="raw"))
    assert raw.stops == RAW_STOPS and raw.prompt.endswith("Q: What is 2 x 2?\nA:")
    chat = to_reasoning(Item(1, "Capital of France?", "Paris", "contains"))
    assert chat.stops == () and chat.prompt.endswith(INSTRUCTION)
    with pytest.raises(ValueError):
        question_of("  \n ")


def test_reason_budget_must_be_positive(tmp_path: Path, capsys):
    csv = tmp_path / "one.csv"
    csv.write_text("prompt,answer\n2 + 2 =,4\n")
    assert main([str(csv), "--reason", "--reason-max-tokens", "0", "--quiet"]) == 2
    assert "--reason-max-tokens must be at least 1" in capsys.readouterr().err


def test_a_raw_reasoning_item_runs_past_line_breaks_to_its_stops(embedded):
    item = to_reasoning(Item(0, "2 + 2 = 4\n3 + 5 =", "8", "numeric", format="raw"))
    gen = engine_generate_fn(embedded, max_tokens=40)(item, "greedy", 0)
    assert "\nQ:" not in gen.text and "\n\n" not in gen.text
    assert gen.finish_reason in ("stop", "stop_string") or gen.tokens == 40
