"""Answer matchers: does a model's free-text response contain the expected answer?

Pure functions, no model. ``match(response, answer, kind)`` is the single entry point; ``kind`` is
one of ``numeric | choice | yesno | exact | contains`` (``infer_kind`` picks one from the answer).
Several accepted answers can be given in one cell separated by ``|`` ("USA|United States").

Rules (each is the documented contract, tested in tests/test_answers.py):

numeric
    Numbers are read as written: ``-3``, ``9.9``, ``.5``, ``1,234`` (commas only as thousands
    separators), ``3/4`` (a fraction is its value, 0.75), ``$5`` and ``50%`` (the sign is dropped,
    so 50% reads as 50), ``1e3`` is *not* scientific notation (it reads as 1). Which number of the
    response counts:
      1. the number right after the last answer marker (``answer is``, ``answer:``, ``####``,
         ``\\boxed{``), the GSM8K-style conventions, if there is one;
      2. else the number right after the last ``=`` ("7 + 5 = 12" -> 12), so restating the
         question before the result is not penalised;
      3. else the first number (short-answer prompts: "82 is larger than 47" -> 82).
    Values match within a relative tolerance of 1e-6 (so "12.0" matches "12").
choice
    A multiple-choice letter A-J: after an answer marker ("answer is (B)", "Answer: B"), else a
    letter opening the response ("B", "(B)", "B) ...", "B. ..."), else the first bracketed "(B)"
    or "B)" anywhere, else the first standalone capital letter other than "A" and "I" (which are
    English words: "A good answer is B" -> B). Letters compare case-insensitively. If no letter
    is found and the options are known (``parse_options(prompt)`` reads "A) text" / "(A) text" /
    "A. text" lines), a response naming exactly one option's text picks that option ("The
    capital of Turkey is Ankara." -> the option "Ankara"); naming several picks none.
yesno
    The first of the words yes/true/correct (-> yes) or no/false/incorrect (-> no), whole words,
    case-insensitive. "not" is not a "no".
exact
    Normalized equality: lowercase, punctuation and the articles a/an/the removed, whitespace
    collapsed. "The Paris." == "paris".
contains
    The normalized answer appears as whole words in the normalized response ("The capital of
    France is Paris." contains "Paris"). Default kind for free-text answers; it can be fooled by
    a response that lists several candidates, which short-answer prompts rarely produce.
"""

from __future__ import annotations

import math
import re
import string
from fractions import Fraction
from typing import Literal

Kind = Literal["numeric", "choice", "yesno", "exact", "contains"]
KINDS: tuple[Kind, ...] = ("numeric", "choice", "yesno", "exact", "contains")

# A number: optional sign, digits with optional thousands commas, optional decimals, or ".5";
# optionally a fraction "/digits". Not preceded by a letter or digit (so "x2" or "A1" are skipped).
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-\u2212]?)\$?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<dec>\.\d+)?"
    r"(?:\s*/\s*(?P<den>\d+))?"
)
_MARKERS = re.compile(r"(answer\s*(?:is|:|=)|####|\\boxed\{)", re.IGNORECASE)
_YES = {"yes", "true", "correct"}
_NO = {"no", "false", "incorrect"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}\u2019\u2018\u201c\u201d]")


Span = tuple[int, int]  # [start, end) characters of the response


def number_in(text: str, pos: int = 0) -> tuple[float, Span] | None:
    """The value and span of the first well-formed number of ``text`` at or after ``pos``."""
    for m in _NUMBER.finditer(text, pos):
        if m.group("int") is None and m.group("dec") is None:
            continue  # the pattern matched only a sign or "$": not a number
        value = Fraction((m.group("int") or "0").replace(",", "") + (m.group("dec") or ""))
        if m.group("den") is not None and m.group("dec") is None:
            den = int(m.group("den"))
            if den == 0:
                continue
            value /= den
        if m.group("sign"):
            value = -value
        return float(value), m.span()
    return None


def parse_number(text: str) -> float | None:
    """The value of the first number in ``text`` (see the module docstring), or None."""
    found = number_in(text)
    return None if found is None else found[0]


def read_number(response: str) -> tuple[float, Span] | None:
    """The number a response commits to (the module docstring's rule) and where it stands."""
    markers = list(_MARKERS.finditer(response))
    after_marker = number_in(response, markers[-1].end()) if markers else None
    after_equals = number_in(response, response.rindex("=") + 1) if "=" in response else None
    return after_marker or after_equals or number_in(response)


def extract_number(response: str) -> float | None:
    """The number a response commits to (``read_number``), or None."""
    found = read_number(response)
    return None if found is None else found[0]


def read_choice(response: str) -> Span | None:
    """Where the multiple-choice letter a response commits to stands (``extract_choice``)."""
    text = response.strip()
    lead = len(response) - len(response.lstrip())
    for m in _MARKERS.finditer(text):
        after = re.match(r"\s*\(?([A-J])(?![\w'])", text[m.end() :])
        if after:
            return lead + m.end() + after.start(1), lead + m.end() + after.end(1)
    # "A" and "I" open English sentences, so alone they need a bracket, "." or ":" to count.
    # Else a bracketed letter anywhere, else a lone one. Each alternative has its own group.
    found = (
        re.match(r"\(([A-J])\)|([A-J])(?:[).:]|$)|([B-HJ])\s", text)
        or re.search(r"\(([A-J])\)|(?<![\w])([A-J])\)", text)
        or re.search(r"(?<![\w'])([B-HJ])(?![\w'])", text)
    )
    if found is None:
        return None
    return lead + found.start(found.lastindex), lead + found.end(found.lastindex)


def extract_choice(response: str) -> str | None:
    """The multiple-choice letter (A-J, upper case) a response commits to, or None."""
    span = read_choice(response)
    return None if span is None else response[span[0] : span[1]].upper()


def parse_options(prompt: str) -> dict[str, str]:
    """Multiple-choice options listed one per line in a prompt: {"A": "Paris", ...}."""
    return dict(re.findall(r"^\s*\(?([A-J])[).:]\s+(.+?)\s*$", prompt, flags=re.MULTILINE))


def read_option(response: str, options: dict[str, str] | None) -> tuple[str, Span | None] | None:
    """The one option whose text the response names (see the module docstring) and where that
    text first stands (None: only its normalized form is there, e.g. across punctuation)."""
    said = f" {normalize(response)} "
    named = [k for k, t in (options or {}).items() if normalize(t) and f" {normalize(t)} " in said]
    if len(named) != 1:
        return None
    where = re.search(re.escape(options[named[0]]), response, flags=re.IGNORECASE)  # type: ignore[index]
    return named[0], where.span() if where else None


def read_yesno(response: str) -> tuple[str, Span] | None:
    """'yes' or 'no' from the first yes/no-like word, and where that word stands."""
    for m in re.finditer(r"[a-z]+", response.lower()):
        if m.group() in _YES:
            return "yes", m.span()
        if m.group() in _NO:
            return "no", m.span()
    return None


def extract_yesno(response: str) -> str | None:
    """'yes' or 'no' from the first yes/no-like word, or None."""
    found = read_yesno(response)
    return None if found is None else found[0]


def normalize(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse whitespace."""
    text = _PUNCT.sub(" ", text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def infer_kind(answer: str) -> Kind:
    """numeric if the answer is a number, choice if a single letter A-J, yesno, else contains."""
    first = answer.split("|")[0].strip()
    if re.fullmatch(r"(?=\D*\d)[-\u2212]?\$?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?(\s*/\s*\d+)?%?", first):
        return "numeric"  # a number with at least one digit
    if re.fullmatch(r"\(?[A-Ja-j]\)?", first):
        return "choice"
    if first.lower() in _YES | _NO:
        return "yesno"
    return "contains"


def _match_one(
    response: str, answer: str, kind: Kind, options: dict[str, str] | None = None
) -> bool:
    if kind == "numeric":
        want, got = parse_number(answer), extract_number(response)
        if want is None:
            raise ValueError(f"numeric answer {answer!r} is not a number")
        return got is not None and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)
    if kind == "choice":
        return read_answer(response, kind, options)[0] == answer.strip().strip("()").upper()
    if kind == "yesno":
        want = extract_yesno(answer)
        if want is None:
            raise ValueError(f"yes/no answer {answer!r} is neither yes nor no")
        return extract_yesno(response) == want
    if kind == "exact":
        return normalize(response) == normalize(answer)
    if kind == "contains":
        needle = normalize(answer)
        return bool(needle) and f" {needle} " in f" {normalize(response)} "
    raise ValueError(f"unknown answer kind {kind!r} (use one of {', '.join(KINDS)})")


def match(
    response: str, answer: str, kind: Kind | None = None, options: dict[str, str] | None = None
) -> bool:
    """True if ``response`` gives ``answer`` (any of its ``|``-separated alternatives).

    ``options``: the multiple-choice options (``parse_options(prompt)``), for ``choice`` only.
    """
    kind = kind or infer_kind(answer)
    alts = [a.strip() for a in answer.split("|") if a.strip()]
    return any(_match_one(response, alt, kind, options) for alt in alts)


def read_answer(
    response: str, kind: Kind, options: dict[str, str] | None = None
) -> tuple[str | None, Span | None]:
    """What the matcher reads from the response (None: nothing) and where it stands (None: no
    narrower place than the whole response: free text, or an option named by its text)."""
    if kind == "numeric":
        number = read_number(response)
        return (None, None) if number is None else (f"{number[0]:g}", number[1])
    if kind == "choice":  # a letter and its span; else the one option named, by its text
        letter = extract_choice(response)
        if letter is None and options and (named := read_option(response, options)):
            return named[0], None
        return letter, read_choice(response)
    if kind == "yesno":
        word = read_yesno(response)
        return (None, None) if word is None else word
    return normalize(response)[:80], None


def extracted(response: str, kind: Kind, options: dict[str, str] | None = None) -> str | None:
    """What the matcher read from the response, for the per-item report (None: nothing)."""
    return read_answer(response, kind, options)[0]
