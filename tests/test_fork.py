"""Fork mode: the pure scoring/selection rules, and a fork run on the embedded model."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.config import SamplerConfig
from mlx_entropix.fork import (
    answer_span,
    branch_score,
    fork_due,
    normalize_answer,
    select_branch,
)
from mlx_entropix.generate import generate

import pytest

PROMPT = "What is 17 + 25? Answer with the number only."


def test_selection_keeps_the_highest_score_first_on_ties():
    assert select_branch([0.1, 0.9, 0.5], ["a", "b", "c"], aggregate=False) == 1
    assert select_branch([0.7, 0.2, 0.7], ["a", "b", "c"], aggregate=False) == 0
    assert select_branch([-3.0, -1.0, -2.0], [None, None, None], aggregate=False) == 1


def test_aggregation_sums_scores_per_answer_and_keeps_its_best_branch():
    scores, answers = [0.5, 0.3, 0.4, 0.1], ["7", "42", "42", None]
    assert select_branch(scores, answers, aggregate=True) == 2  # "42": 0.7 beats "7": 0.5
    assert select_branch([0.5, 0.3, 0.1], ["7", None, None], aggregate=True) == 0  # no pooling


def test_answer_span_covers_the_last_number():
    texts = ["The", " answer", " is", " 4", "2", ".", " Not", " 1", "."]
    assert answer_span(texts) == (7, 8)
    assert answer_span(texts[:6]) == (3, 5)
    assert answer_span(["Paris", "."]) == (0, 2)


def test_normalized_answers():
    assert normalize_answer("The total is 1,234.") == "1234"
    assert normalize_answer("It is 3.0") == "3"
    assert normalize_answer("  Paris. ") == "paris"
    assert normalize_answer(" \n") is None


def test_branch_scores_follow_their_rule():
    texts = ["So", " it", " is", " 4", "2"]
    margins = [0.0, 0.1, 0.2, 0.9, 0.7]
    entropies = [5.0, 1.0, 2.0, 3.0, 2.0]
    logprobs = [-3.0, -0.5, -0.5, -1.0, -1.0]
    assert branch_score("answer_margin", texts, entropies, logprobs, margins) == pytest.approx(0.8)
    # the first token (the fork's own distribution) is left out of the whole-branch means
    assert branch_score("margin", texts, entropies, logprobs, margins) == pytest.approx(0.475)
    assert branch_score("entropy", texts, entropies, logprobs, margins) == pytest.approx(-2.0)
    assert branch_score("logprob", texts, entropies, logprobs, margins) == pytest.approx(-0.75)
    assert branch_score("margin", ["Paris"], [1.0], [-0.2], [0.6]) == pytest.approx(0.6)


def test_fork_triggers():
    cfg = SamplerConfig(fork_trigger="first")
    assert fork_due(cfg, 0, 4) == "first" and fork_due(cfg, 3, 2) is None
    cfg = SamplerConfig(fork_trigger="exploring")
    assert fork_due(cfg, 0, 4) is None and fork_due(cfg, 3, 2) == "exploring"
    assert fork_due(SamplerConfig(fork_trigger="both"), 0, 2) == "first"


def _run(lm, cfg, max_tokens=24, stop=()):
    return list(generate(lm, PROMPT, mode="fork", config=cfg, max_tokens=max_tokens,
                         top_logprobs=2, stop=stop))  # fmt: skip


def test_fork_run_end_to_end(embedded):
    cfg = embedded.default_config.merged(
        {"fork_trigger": "both", "fork_branches": 3, "fork_branch_tokens": 6, "fork_max_forks": 2}
    )
    events = _run(embedded, cfg)
    done = events[-1]
    tokens = [e for e in events if e.type == "token"]
    forks = [e for e in events if e.type == "fork"]
    assert done.type == "done" and done.mode == "fork"
    assert 1 <= len(forks) == done.forks <= 2
    assert "".join(e.text for e in tokens) == done.text
    assert [e.index for e in tokens] == list(range(len(tokens)))
    branch_work = 0
    for fork in forks:
        assert len(fork.branches) == 3
        assert [b.kept for b in fork.branches] == [j == fork.kept for j in range(3)]
        assert all(1 <= b.tokens <= 6 for b in fork.branches)
        assert len({b.token.id for b in fork.branches}) == 3
        kept = fork.branches[fork.kept]
        after = [e for e in tokens if e.index >= fork.index]
        assert after[0].id == kept.token.id  # the kept branch's tokens follow the fork event
        assert "".join(e.text for e in after).startswith(kept.text)
        assert events.index(fork) < events.index(after[0])
        assert fork.tokens_computed <= 3 * 5  # the first tokens come from the fork's step
        branch_work += fork.tokens_computed
    assert (
        done.generated_tokens <= done.tokens_computed <= done.generated_tokens + branch_work + 2 * 2
    )
    # the first fork's kept branch is scored highest (no aggregation)
    first = forks[0]
    assert first.branches[first.kept].score == max(b.score for b in first.branches)


def test_fork_continues_from_the_kept_row_as_greedy_would(embedded):
    cfg = embedded.default_config.merged({"fork_branches": 3, "fork_branch_tokens": 4})
    events = _run(embedded, cfg, max_tokens=12)
    fork = next(e for e in events if e.type == "fork")
    ids = [e.id for e in events if e.type == "token"]
    n = fork.branches[fork.kept].tokens
    prompt = embedded.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    rest = generate(embedded, prompt + ids[:n], mode="greedy", max_tokens=12 - n, top_logprobs=0)
    assert [e.id for e in rest if e.type == "token"] == ids[n:]


def test_no_fork_budget_is_greedy(embedded):
    cfg = embedded.default_config.merged({"fork_max_forks": 0})
    fork = [e for e in _run(embedded, cfg, max_tokens=8) if e.type == "token"]
    greedy = generate(embedded, PROMPT, mode="greedy", max_tokens=8, top_logprobs=2)
    assert [e.id for e in fork] == [e.id for e in greedy if e.type == "token"]


def test_cancel_during_a_fork_stops_its_branches(embedded):
    import inspect

    asked = []

    def should_stop() -> bool:
        # False during the prefill (checked between layers) and before the fork; true from
        # the moment the fork's branches ask.
        if any(frame.function == "explore" for frame in inspect.stack()):
            asked.append(1)
        return bool(asked)

    cfg = embedded.default_config.merged({"fork_trigger": "first"})
    events = list(generate(embedded, PROMPT, mode="fork", config=cfg, max_tokens=16,
                           should_stop=should_stop))  # fmt: skip
    fork, done = events[0], events[-1]
    assert fork.type == "fork" and fork.tokens_computed == 0
    assert done.finish_reason == "cancelled" and done.generated_tokens == 1
