"""Batched decoding: B rows from one prefill give, row by row, the events of separate runs."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate, generate_batch
from mlx_entropix.engine.stream import params_of
from mlx_entropix.events import METRIC_NAMES
from mlx_entropix.uncertainty.sampler import decide

import mlx.core as mx
import pytest

PROMPT = "Name three colours of the rainbow."


def _tokens(events, mode=None):
    return [e for e in events if e.type == "token" and (mode is None or e.mode == mode)]


def _assert_same(batch, alone):
    assert [e.id for e in batch] == [e.id for e in alone]
    for b, a in zip(batch, alone, strict=True):
        for name in METRIC_NAMES:
            assert getattr(b.metrics, name) == pytest.approx(
                getattr(a.metrics, name), rel=1e-5, abs=1e-5
            )
        assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
        assert (b.state, b.action, b.text) == (a.state, a.action, a.text)


def test_greedy_batch_rows_match_separate_runs(embedded):
    events = list(generate_batch(embedded, PROMPT, modes=["greedy"] * 3, seeds=[1, 2, 3],
                                 max_tokens=10, top_logprobs=2))  # fmt: skip
    alone = _tokens(generate(embedded, PROMPT, mode="greedy", seed=1, max_tokens=10,
                             top_logprobs=2))  # fmt: skip
    rows = [[e for e in _tokens(events)][r::3] for r in range(3)]
    for row in rows:
        _assert_same(row, alone)
    dones = [e for e in events if e.type == "done"]
    assert [d.text for d in dones] == ["".join(e.text for e in alone)] * 3


def test_mixed_batch_rows_match_separate_runs_with_their_own_seeds(embedded):
    rows = [("greedy", 5), ("normal", 11), ("entropix", 12)]
    events = list(generate_batch(embedded, PROMPT, modes=[m for m, _ in rows],
                                 seeds=[s for _, s in rows], max_tokens=12))  # fmt: skip
    for mode, seed in rows:
        alone = list(generate(embedded, PROMPT, mode=mode, seed=seed, max_tokens=12))
        _assert_same(_tokens(events, mode), _tokens(alone))
        done = next(e for e in events if e.type == "done" and e.mode == mode)
        assert (done.text, done.seed) == (alone[-1].text, seed)


def test_compare_batch_matches_two_separate_runs(embedded):
    events = list(generate_batch(embedded, PROMPT, modes=["entropix", "normal"], seeds=[7, 7],
                                 max_tokens=16))  # fmt: skip
    for mode in ("entropix", "normal"):
        alone = list(generate(embedded, PROMPT, mode=mode, seed=7, max_tokens=16))
        assert [e.id for e in _tokens(events, mode)] == [e.id for e in _tokens(alone)]
        done = next(e for e in events if e.type == "done" and e.mode == mode)
        assert done.text == alone[-1].text
        assert done.text == "".join(e.text for e in _tokens(events, mode))


def test_batch_without_seed_shares_one_seed(embedded):
    events = list(generate_batch(embedded, PROMPT, modes=["entropix", "normal"], max_tokens=2))
    seeds = {e.seed for e in events if e.type == "done"}
    assert len(seeds) == 1


def test_entropix_event_params_equal_the_decision_for_their_metrics(embedded):
    cfg = embedded.default_config
    events = _tokens(generate(embedded, "Tell me a short story about a fox.", mode="entropix",
                              seed=4, max_tokens=40))  # fmt: skip
    clarified = False
    for e in events:
        metrics = mx.array([[getattr(e.metrics, n) for n in METRIC_NAMES]], dtype=mx.float32)
        plan = decide(metrics, cfg, "entropix", mx.array([not clarified]))
        values = [a.item() for a in plan.arrays()]
        assert params_of(values[2:]) == e.params
        assert (values[0], values[1]) == (
            ("flowing", "treading", "exploring", "resampling", "adaptive").index(e.state),
            ("argmax", "sample", "best_of_n", "clarify").index(e.action),
        )
        clarified |= e.action == "clarify"
    assert len({e.state for e in events}) > 1  # several branches of the decision were checked
