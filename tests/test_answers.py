"""Answer matchers: each documented rule of mlx_entropix/answers.py, one case at a time."""

from __future__ import annotations

from mlx_entropix.answers import (
    extract_choice,
    extract_number,
    extract_yesno,
    infer_kind,
    match,
    normalize,
    parse_number,
    parse_options,
)

import pytest


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("9.9", 9.9),
        ("-3", -3.0),
        ("\u22123", -3.0),  # unicode minus
        ("1,234", 1234.0),
        ("1,234,567.5", 1234567.5),
        ("3/4", 0.75),
        ("3 / 4", 0.75),
        (".5", 0.5),
        ("$5", 5.0),
        ("50%", 50.0),
        ("12.", 12.0),  # sentence-final period is not a decimal point
        ("about 7 apples", 7.0),
        ("x2 then 5", 5.0),  # a digit glued to a letter is not a number
        ("no digits", None),
        ("1/0", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    ("response", "value"),
    [
        ("82 is larger than 47.", 82.0),  # first number
        ("7 + 5 = 12", 12.0),  # after the last '='
        ("So 3 + 4 = 7, and 7 + 1 = 8.", 8.0),
        ("We add 3 and 4. The answer is 7.", 7.0),  # after the marker
        ("Answer: -2", -2.0),
        ("step 1: 5 apples\n#### 1,250", 1250.0),
        ("\\boxed{3/4}", 0.75),
        ("The answer is unclear, maybe 4", 4.0),  # marker without a number falls back
        ("nothing here", None),
    ],
)
def test_extract_number(response, value):
    assert extract_number(response) == value


def test_numeric_match_tolerance_and_commas():
    assert match("12.0", "12", "numeric")
    assert match("The total is 1,234 dollars", "1234", "numeric")
    assert match("0.75", "3/4", "numeric")
    assert not match("9.11", "9.9", "numeric")
    assert not match("", "5", "numeric")


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("(C)", "C"),
        ("D) Paris", "D"),
        ("A. Kathmandu", "A"),
        ("A", "A"),
        ("The answer is (B).", "B"),
        ("Answer: C", "C"),
        ("A good answer is B", "B"),  # "A" as an article does not count
        ("I think it is C", "C"),
        ("The capital is Paris, so option (D) is right", "D"),
        ("The capital of Nepal is Kathmandu.", None),
    ],
)
def test_extract_choice(response, letter):
    assert extract_choice(response) == letter


def test_choice_match_answer_forms():
    assert match("B) Berlin", "B", "choice")
    assert match("b", "(B)", "choice") is False  # lower-case response letters are not read
    assert match("(A)", "a", "choice")


def test_choice_falls_back_to_option_text():
    prompt = "What is the capital of Turkey?\nA) Rome\nB) Ankara\n(C) Mexico City\nAnswer: A-C."
    options = parse_options(prompt)
    assert options == {"A": "Rome", "B": "Ankara", "C": "Mexico City"}
    assert match("The capital of Turkey is Ankara.", "B", "choice", options)
    assert match("It is Mexico City", "C", "choice", options)
    assert not match("Rome or Ankara", "B", "choice", options)  # two options named: none
    assert not match("A) Ankara", "B", "choice", options)  # a letter wins over the text
    assert not match("The capital of Turkey is Ankara.", "B", "choice")  # options unknown


@pytest.mark.parametrize(
    ("response", "word"),
    [
        ("Yes.", "yes"),
        ("no, it is not", "no"),
        ("That is not true", "yes"),  # "not" is not a "no"; "true" is read
        ("False", "no"),
        ("Correct!", "yes"),
        ("Incorrect.", "no"),
        ("Nobody knows", None),  # whole words only
        ("maybe", None),
    ],
)
def test_extract_yesno(response, word):
    assert extract_yesno(response) == word


def test_exact_and_contains():
    assert normalize("  The Paris. ") == "paris"
    assert match("The Paris.", "paris", "exact")
    assert not match("Paris, France", "Paris", "exact")
    assert match("The capital of France is Paris.", "Paris", "contains")
    assert not match("Parisian food", "Paris", "contains")  # whole words
    assert match("It is Mexico City.", "Mexico City", "contains")


def test_alternatives():
    assert match("The capital of Ukraine is Kiev.", "Kyiv|Kiev", "contains")
    assert match("Bogotá", "Bogota|Bogotá")
    assert not match("Lviv", "Kyiv|Kiev")


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("12", "numeric"),
        ("-3.5", "numeric"),
        ("1,234", "numeric"),
        ("3/4", "numeric"),
        ("B", "choice"),
        ("(c)", "choice"),
        ("yes", "yesno"),
        ("No", "yesno"),
        ("Paris", "contains"),
        ("Kyiv|Kiev", "contains"),
    ],
)
def test_infer_kind(answer, kind):
    assert infer_kind(answer) == kind


def test_bad_answers_raise():
    with pytest.raises(ValueError, match="not a number"):
        match("5", "five", "numeric")
    with pytest.raises(ValueError, match="neither yes nor no"):
        match("yes", "maybe", "yesno")
    with pytest.raises(ValueError, match="unknown answer kind"):
        match("x", "x", "fuzzy")  # type: ignore[arg-type]
