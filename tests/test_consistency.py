"""Self-consistency: the majority vote rule, and k rows of one batch against k runs alone."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.answers import extracted
from mlx_entropix.engine.generate import generate
from mlx_entropix.eval.consistency import row_seeds, sample_rows, vote


def test_the_vote_keeps_the_majority_answer_ties_to_the_first():
    assert vote(["4", "2", "2", None, "4", "2"]) == 1  # "2": 3 votes
    assert vote(["4", "2", "2", "4"]) == 0  # a tie: the answer voted first
    assert vote([None, "7", None]) == 1  # rows without an answer do not vote
    assert vote([None, None]) == 0
    assert row_seeds(5, 3)[0] == 5 and len(set(row_seeds(5, 3))) == 3


def test_the_vote_of_k_rows_is_the_majority_of_the_same_seeds_run_one_at_a_time(embedded):
    prompt = "Name a colour. One word."
    k, seed, cfg = 4, 11, embedded.default_config
    dones = sample_rows(embedded, prompt, k, seed, cfg, 6, ())
    alone = []
    for s in row_seeds(seed, k):
        events = list(generate(embedded, prompt, mode="normal", config=cfg, max_tokens=6,
                               seed=s, top_logprobs=0))  # fmt: skip
        alone.append(events[-1].text)
    assert [d.text for d in dones] == alone
    answers = [extracted(t, "contains") or None for t in alone]
    majority = max(set(answers), key=lambda a: (answers.count(a), -answers.index(a)))
    assert answers[vote([extracted(d.text, "contains") or None for d in dones])] == majority


def test_the_harness_scores_every_branch_and_row_with_the_graders_matcher():
    from mlx_entropix.eval.harness import Generation, Item, run_eval
    from mlx_entropix.eval.main import _parse_modes

    item = Item(0, "What is 2 + 2?", "4", "numeric")
    rows = [{"text": "4", "answer": "4"}, {"text": "2 + 2 = 5", "answer": "5"}]

    def fn(item, mode, seed):
        return Generation(text="4", tokens=1, seconds=0.1, branches=rows if mode == "sc" else [])

    records = run_eval([item], fn, modes=["greedy", "sc"], progress=False)
    assert "branches" not in records[0]
    assert [b["correct"] for b in records[1]["branches"]] == [True, False]
    assert _parse_modes("sc,greedy,fork") == ["greedy", "fork", "sc"]
