"""Diversity and gibberish guards (``benchmarks/diversity.py``) on constructed texts."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import pytest
from diversity import (  # noqa: E402  (a benchmark module, not a package module)
    distinct_across,
    diversity,
    mean_logprob,
    ngrams,
    repetition_rate,
    words,
)


def test_identical_outputs_have_zero_diversity():
    texts = ["The cat sat on the mat."] * 4
    assert diversity(texts) == 0.0
    for n in (1, 2, 3):
        assert distinct_across(texts, n) == 0.0


def test_disjoint_outputs_have_maximal_diversity():
    texts = ["apple pie", "blue whale", "red kite", "green tea"]
    assert diversity(texts) == 1.0


def test_partial_overlap_lies_between_and_orders_sensibly():
    same = ["Name: apple", "Name: apple", "Name: apple", "Name: pear"]
    varied = ["Name: apple", "Name: pear", "Name: plum", "Name: fig"]
    low, high = diversity(same), diversity(varied)
    assert 0.0 < low < high < 1.0
    # unigrams: sets {name, :, apple} x3 and {name, :, pear}: union 4, max 3, spare 9.
    assert distinct_across(same, 1) == pytest.approx(1 / 9)


def test_repeats_inside_one_output_do_not_count_as_diversity():
    assert distinct_across(["a a a a", "a"], 1) == 0.0


def test_case_and_punctuation_are_normalised():
    assert words("Hello, World!") == ["hello", ",", "world", "!"]
    assert diversity(["Hello world", "hello WORLD"]) == 0.0


def test_degenerate_inputs():
    assert diversity([]) == 0.0
    assert diversity(["only one"]) == 0.0
    assert diversity(["", ""]) == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        ngrams(["a"], 0)


def test_repetition_rate_flags_loops():
    assert repetition_rate("the quick brown fox jumps over the lazy dog") == 0.0
    loop = "I like it. " * 6
    assert repetition_rate(loop) > 0.7
    assert repetition_rate("too short") == 0.0


def test_mean_logprob_pools_tokens():
    assert mean_logprob([[-1.0, -3.0], [-2.0]]) == pytest.approx(-2.0)
    assert mean_logprob([]) == 0.0
