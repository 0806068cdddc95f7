"""Fork mode: the pure scoring/selection rules, and a fork run on the embedded model."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.answers import extracted
from mlx_entropix.config import SamplerConfig
from mlx_entropix.engine.branches import Branch
from mlx_entropix.engine.fork import (
    answer_groups,
    branch_score,
    fork_due,
    read_branch,
    select_branch,
)
from mlx_entropix.engine.generate import generate
from mlx_entropix.engine.stream import StopMatcher

import pytest

PROMPT = "What is 17 + 25? Answer with the number only."


def test_selection_keeps_the_highest_score_first_on_ties():
    assert select_branch([0.1, 0.9, 0.5], ["a", "b", "c"], aggregate=False) == 1
    assert select_branch([0.7, 0.2, 0.7], ["a", "b", "c"], aggregate=False) == 0
    assert select_branch([-3.0, -1.0, -2.0], [None, None, None], aggregate=False) == 1


def test_branches_without_an_answer_rank_last():
    assert select_branch([0.9, 0.2, 0.1], [None, "7", "8"], aggregate=False) == 1
    assert select_branch([0.9, 0.2, 0.1], [None, "7", "8"], aggregate=True) == 1


def test_aggregation_sums_scores_per_answer_and_keeps_its_best_branch():
    scores, answers = [0.5, 0.3, 0.4, 0.1], ["7", "42", "42", None]
    assert select_branch(scores, answers, aggregate=True) == 2  # "42": 0.7 beats "7": 0.5
    assert select_branch(scores, answers, aggregate=False) == 0
    assert select_branch([0.5, 0.3, 0.1], ["7", None, None], aggregate=True) == 0  # no pooling
    groups = answer_groups(scores, answers)
    assert [(a, round(t, 6), m) for a, t, m in groups] == [("42", 0.7, [2, 1]), ("7", 0.5, [0])]
    # three weak branches that agree beat one strong one; a tie goes to the earlier best branch
    assert select_branch([0.6, 0.25, 0.25, 0.25], ["1", "2", "2", "2"], aggregate=True) == 1
    assert select_branch([0.5, 0.25, 0.25], ["1", "2", "2"], aggregate=True) == 0


def test_the_branch_answer_is_the_graders_on_the_graders_own_cases():
    from tests import test_answers as cases

    def marked(test) -> list[tuple]:
        return list(test.pytestmark[0].args[1])

    numeric = [r for r, _ in marked(cases.test_extract_number)]
    choice = [r for r, _ in marked(cases.test_extract_choice)]
    yesno = [r for r, _ in marked(cases.test_extract_yesno)]
    free = ["The Paris.", "The capital of France is Paris.", "  ", "Ankara\n"]
    for kind, responses in (("numeric", numeric), ("choice", choice), ("yesno", yesno),
                            ("contains", free), ("exact", free)):  # fmt: skip
        for response in responses:
            for width in (1, 3, 7):  # the same text cut into tokens three ways
                texts = [response[i : i + width] for i in range(0, len(response), width)]
                answer, (lo, hi) = read_branch(texts, kind)  # type: ignore[arg-type]
                want = extracted(response, kind)  # type: ignore[arg-type]
                assert answer == (want or None), (kind, response)
                assert 0 <= lo < hi <= len(texts) or not texts
                if answer is not None and kind in ("numeric", "choice"):
                    # the span's tokens hold the answer: re-read alone they give it again
                    assert extracted("".join(texts[lo:hi]), kind) == want  # type: ignore[arg-type]
    options = {"A": "Paris", "B": "Ankara"}
    assert read_branch(["The capital", " is Ankara."], "choice", options) == ("B", (0, 2))


def test_answer_span_is_where_the_grader_reads_the_answer():
    texts = ["So", " 3", " +", " 4", " =", " 7", ",", " and", " 7", " +", " 1", " =", " 8", "."]
    assert read_branch(texts, "numeric") == ("8", (12, 13))
    texts = ["The", " answer", " is", " (", "C", ")", ".", " B", " is", " wrong"]
    assert read_branch(texts, "choice") == ("C", (4, 5))
    assert read_branch(["Paris", "."], "contains") == ("paris", (0, 2))
    assert read_branch(["Paris", "."], None) == ("paris", (0, 2))
    assert read_branch(["no", " digits"], "numeric") == (None, (0, 2))


def test_branch_scores_follow_their_rule():
    margins = [0.0, 0.1, 0.2, 0.9, 0.7]
    entropies = [5.0, 1.0, 2.0, 3.0, 2.0]
    logprobs = [-3.0, -0.5, -0.5, -1.0, -1.0]
    assert branch_score("answer_margin", (3, 5), entropies, logprobs, margins) == pytest.approx(0.8)
    # one scale: every token counts, the first (the fork's distribution) too
    assert branch_score("margin", (3, 5), entropies, logprobs, margins) == pytest.approx(0.38)
    assert branch_score("entropy", (3, 5), entropies, logprobs, margins) == pytest.approx(-2.6)
    assert branch_score("logprob", (3, 5), entropies, logprobs, margins) == pytest.approx(-1.2)
    assert branch_score("margin", (0, 1), [1.0], [-0.2], [0.6]) == pytest.approx(0.6)


def test_a_one_token_branch_and_a_long_one_with_the_same_span_margins_score_the_same():
    fork_margin = 0.3  # the first token's distribution is the fork's, the same for every branch
    short = branch_score("answer_margin", (0, 1), [2.0], [-2.5], [fork_margin])
    long_margins = [fork_margin, 0.9, 0.8, fork_margin]
    texts = ["Let", " me", " see", " B"]
    _, span = read_branch(texts, "choice")
    assert span == (3, 4)
    long = branch_score("answer_margin", span, [1.0] * 4, [-0.1] * 4, long_margins)
    assert short == long == pytest.approx(fork_margin)
    assert read_branch(["B"], "choice") == ("B", (0, 1))


class _Tok:
    """A tokenizer whose token i reads PIECES[i]; token 0 is the end of sequence."""

    PIECES = ["<eos>", "Paris", "\n", " is", " the", " capital", "##"]
    eos_token_ids = {0}

    def detokenizer(self):
        pieces = self.PIECES

        class D:
            def add_token(self, i: int) -> str:
                return pieces[i]

        return D()


def _values(token: int) -> list[float]:
    return [float(token)] + [0.0] * 30


def test_a_branch_is_not_cut_at_a_line_break():
    branch = Branch(_Tok(), StopMatcher(["##"]), limit=6)
    for t in (1, 2, 3, 2):
        branch.add(_values(t), 0.5)
        assert branch.active  # "Paris\n is\n": line breaks are no end
    branch.add(_values(6), 0.5)
    assert not branch.active and branch.end == "stop_string"
    assert "".join(branch.visible()) == "Paris\n is\n"  # the stop string is not text
    eos = Branch(_Tok(), StopMatcher([]), limit=6)
    eos.add(_values(1), 0.5)
    eos.add(_values(0), 0.5)
    assert not eos.active and eos.end == "stop" and eos.texts == ["Paris"]
    budget = Branch(_Tok(), StopMatcher(["\n\n"]), limit=3)
    for t in (1, 2, 3):
        budget.add(_values(t), 0.5)
    assert not budget.active and budget.end == "length" and len(budget.rows) == 3


def test_a_branch_that_is_eos_at_once_is_scored_by_that_token():
    """By log-prob or entropy, a branch that is EOS alone scored 0.0 (no tokens: the best
    possible) and won whenever no branch had an answer; now by its one token, as the others."""
    from mlx_entropix.config import SamplerConfig
    from mlx_entropix.engine.fork import _read_all
    from mlx_entropix.engine.stream import LOGPROB, METRICS

    def values(token: int, logprob: float, entropy: float) -> list[float]:
        v = _values(token)
        v[LOGPROB], v[METRICS.start] = logprob, entropy
        return v

    said, empty = Branch(_Tok(), StopMatcher([]), limit=4), Branch(_Tok(), StopMatcher([]), limit=4)
    for t in (1, 3):  # "Paris is", surely
        said.add(values(t, -0.1, 0.3), 0.8)
    empty.add(values(0, -2.5, 0.3), 0.8)  # EOS, an unlikely first token
    for rule, kept in (("logprob", 0), ("entropy", 0), ("answer_margin", 0)):
        cfg = SamplerConfig().merged({"fork_score": rule, "fork_answer_kind": "numeric"})
        scores, answers, _ = _read_all([said, empty], cfg, None)
        assert answers == [None, None]
        assert select_branch(scores, answers, aggregate=False) == kept, rule
    cfg = SamplerConfig().merged({"fork_score": "logprob"})
    assert _read_all([said, empty], cfg, None)[0][1] == pytest.approx(-2.5)


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
        # the work is exactly what the branches decoded: an ended branch leaves the batch
        assert fork.tokens_computed == sum(b.tokens - 1 for b in fork.branches)
        assert all(b.tokens == 6 for b in fork.branches if b.finish == "length")
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


def test_the_first_k_branches_of_a_wider_fork_are_a_k_branch_fork(embedded):
    """Each branch decodes alone in its row: measuring k = 10 measures every smaller k
    (benchmarks/fork_rules.py relies on it)."""

    def branches(k: int) -> list:
        cfg = embedded.default_config.merged(
            {"fork_trigger": "first", "fork_branches": k, "fork_branch_tokens": 8,
             "fork_answer_kind": "numeric"}
        )  # fmt: skip
        return next(e for e in _run(embedded, cfg, max_tokens=8) if e.type == "fork").branches

    wide, narrow = branches(4), branches(2)
    assert [b.text for b in wide[:2]] == [b.text for b in narrow]
    assert [b.answer for b in wide[:2]] == [b.answer for b in narrow]
    assert [b.score for b in wide[:2]] == pytest.approx([b.score for b in narrow], abs=1e-4)


def test_a_kept_branch_that_ends_at_its_first_token_ends_the_answer(embedded):
    """The prompt's answer is complete: the model's top token is EOS, so one branch is EOS
    alone (no token row). Scored by log-prob with no branch naming a number, it is kept
    (score 0.0): the answer ends there, empty (it raised a ValueError, which in the server
    fails every request of the shared batch)."""
    tok = embedded.tokenizer
    chat = tok.apply_chat_template([{"role": "user", "content": "Say hello."}])
    ids = chat + tok.encode("Hello! How can I help you today?")
    cfg = embedded.default_config.merged({"fork_score": "logprob", "fork_answer_kind": "numeric"})
    events = list(generate(embedded, ids, mode="fork", config=cfg, max_tokens=8))
    fork, done = events[0], events[-1]
    kept = fork.branches[fork.kept]
    assert kept.token.id in tok.eos_token_ids and kept.text == "" and kept.finish == "stop"
    assert [e.type for e in events] == ["fork", "done"]
    assert done.text == "" and done.finish_reason == "stop" and done.generated_tokens == 0
