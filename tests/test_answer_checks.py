"""The checks an answer can fail on its own text (``engine/answer_checks.py``), and the cap
they bring in the confidence map, as a request and the evaluation score it."""

from __future__ import annotations

from mlx_entropix.engine.answer_checks import copied, failed, question_text, solved_examples
from mlx_entropix.engine.confidence import ConfidenceModel, score

import pytest

from tests.test_confidence import ONE, SURE, stream

SUMS = "8 + 1 = 9\n1 + 6 = 7\n5 + 7 = 12\n7 + 3 ="
LARGER = (
    "Q: Which is larger, 62 or 77?\nA: 77\n"
    "Q: Which is larger, 29 or 15?\nA: 29\n"
    "Q: Which is larger, 73 or 89?\nA:"
)
WORDS = (
    "Q: Ruby has 6 apples and gives away 3. How many apples are left?\nA: 6 - 3 = 3\n"
    "Q: Tom has 3 marbles and gives away 1. How many marbles are left?\nA:"
)


def test_solved_examples_read_both_layouts():
    assert solved_examples(SUMS) == ("7 + 3", [("8 + 1", "9"), ("1 + 6", "7"), ("5 + 7", "12")])
    q, ex = solved_examples(LARGER)
    assert q == "Q: Which is larger, 73 or 89?"
    assert ex == [("Q: Which is larger, 62 or 77?", "77"), ("Q: Which is larger, 29 or 15?", "29")]
    assert solved_examples("What is 2 + 2?") == ("What is 2 +", [])  # no examples: nothing
    assert solved_examples("") == ("", [])


@pytest.mark.parametrize(
    ("prompt", "answer", "want"),
    [
        (SUMS, "3", 1.0),  # a number of "7 + 3", where no example copies: a copy
        (SUMS, "10", 0.0),
        (SUMS, "73", 0.0),  # whole numbers only: "7" and "3" are not "73"
        (LARGER, "89", 0.0),  # the examples' answers are numbers of their questions: no failure
        (WORDS, "3", 0.0),  # "6 - 3 = 3" repeats its question's 3: copying is what it does
        ("What is 7 + 3?", "3", 1.0),  # no examples: nothing offered to choose from
        (SUMS, "ten", 0.0),  # no number
    ],
)
def test_copied(prompt, answer, want):
    assert copied(prompt, answer) == want


def test_a_copied_raw_answer_is_capped_and_the_continuation_does_not_count():
    """The copy is read on the answer's span (the first line), with the prompt's text; without
    the prompt (a chat request) nothing is flagged."""
    model = ConfidenceModel({"chat": ONE, "raw": ONE}, {}, {"raw": 0.04})
    text, signals = stream([(" 3", SURE), ("\n", SURE), ("7 + 3 = 10", SURE)])
    right, right_signals = stream([(" 10", SURE), ("\n", SURE), ("3", SURE)])
    capped = score(text, signals, model, "raw", prompt=SUMS)
    assert capped.features["copied"] == 1.0 and failed(capped.features)
    assert capped.confidence == 0.04
    kept = score(right, right_signals, model, "raw", prompt=SUMS)
    assert kept.features["copied"] == 0.0 and kept.confidence > 0.5
    assert score(text, signals, model, "raw").features["copied"] is None
    assert score(text, signals, model, "raw").confidence == kept.confidence


@pytest.mark.parametrize(
    ("question", "answer", "want"),
    [
        ("What number comes after 7?", "7", 1.0),  # no examples: a number of the question
        ("What number comes after 7?", "8", 0.0),
        ("Which is larger, 9.9 or 9.11?", "9.9", 0.0),  # numbers offered to choose from
        ("Pick one: 3, 5 or 8.", "5", 0.0),
        ("Which is right?\nA) 12\nB) 15", "12", 0.0),  # listed options
        ("Tom has 3 apples and gets 2 more. How many?", "3", 1.0),
    ],
)
def test_copied_without_examples(question, answer, want):
    assert copied(question, answer) == want


def test_question_text_is_the_last_turn(embedded):
    """A chat prompt's question is its last user turn: numbers of earlier turns do not count
    (a conversation's running total is no copy); a raw prompt is its whole text."""
    tok = embedded.tokenizer
    chat = [
        {"role": "user", "content": "What is 5 + 5?"},
        {"role": "assistant", "content": "10"},
        {"role": "user", "content": "And 13 - 3?"},
    ]
    q = question_text(tok, tok.apply_chat_template(chat), "chat")
    assert "And 13 - 3?" in q and "5 + 5" not in q
    assert copied(q, "10") == 0.0 and copied(q, "13") == 1.0
    assert question_text(tok, tok.encode(SUMS), "raw") == SUMS
