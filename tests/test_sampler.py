"""The decision tree (every branch and boundary, exact parameters) and the filter chain."""

from __future__ import annotations

from mlx_entropix.config import SamplerConfig
from mlx_entropix.events import SamplingParams
from mlx_entropix.sampler import (
    StepMetrics,
    classify,
    decide,
    draw,
    filter_distribution,
    step_rng,
)

import numpy as np
import pytest

CFG = SamplerConfig()  # the original entropix defaults


def m(ent, vent, aent=1.0, avent=0.5, agr=0.2, ints=2.0) -> StepMetrics:
    return StepMetrics(ent, vent, aent, avent, agr, ints)


@pytest.mark.parametrize(
    ("ent", "vent", "state"),
    [
        (0.05, 0.05, "flowing"),
        (0.1, 0.05, "adaptive"),  # low_ent is strict
        (0.05, 0.1, "adaptive"),  # low_vent is strict
        (5.01, 0.05, "treading"),
        (5.0, 0.05, "adaptive"),  # high_ent is strict
        (4.99, 5.01, "exploring"),
        (0.0, 5.01, "exploring"),
        (4.99, 5.0, "adaptive"),  # high_vent is strict
        (5.0, 5.01, "resampling"),  # not < high_ent, > med_ent: the mist
        (7.0, 9.0, "resampling"),
        (2.0, 2.0, "adaptive"),
    ],
)
def test_classify_boundaries(ent, vent, state):
    assert classify(m(ent, vent), CFG) == state


def test_flowing_is_argmax():
    d = decide(m(0.01, 0.01), CFG)
    assert (d.state, d.action, d.params.temperature, d.params.top_k) == ("flowing", "argmax", 0, 1)


def test_treading_clarifies_once_then_samples_warmer():
    d = decide(m(6.0, 0.0, aent=2.0), CFG, can_clarify=True)
    assert (d.state, d.action) == ("treading", "clarify")
    d = decide(m(6.0, 0.0, aent=2.0), CFG, can_clarify=False)
    assert d.action == "sample"
    assert d.params.temperature == pytest.approx(0.666 * (1.3 + 0.2 * 2.0))
    assert (d.params.top_p, d.params.top_k, d.params.min_p) == (0.9, 27, 0.03)
    d = decide(m(6.0, 0.0, aent=10.0), CFG)
    assert d.params.temperature == 1.5  # capped


def test_exploring_parameters():
    d = decide(m(1.0, 6.0, agr=0.2, ints=0.5), CFG)
    assert (d.state, d.action) == ("exploring", "sample")
    assert d.params.temperature == pytest.approx(0.666 * (1.2 + 0.3 * 0.5))
    assert d.params.top_k == int(27 * (1 + 0.5 * 0.8)) == 37
    d = decide(m(1.0, 6.0, agr=0.2, ints=5.0), CFG)
    assert d.params.temperature == 1.5  # min(1.5, ...) not the MLX port's min(1, 5, ...)
    d = decide(m(1.0, 6.0, agr=30.0), CFG)
    assert d.params.top_k == 5  # floor


def test_resampling_parameters():
    d = decide(m(6.0, 6.0, aent=1.0, avent=4.0), CFG)
    assert (d.state, d.action) == ("resampling", "sample")
    assert d.params.temperature == pytest.approx(0.666 * (2.0 + 0.5 * 4.0))
    assert d.params.top_p == pytest.approx(0.9 - 0.2 * 1.0)
    d = decide(m(6.0, 6.0, aent=3.0, avent=0.0), CFG)
    assert d.params.temperature == 2.0  # floor
    assert d.params.top_p == 0.5  # floor


def test_adaptive_parameters():
    mm = m(1.0, 2.0, aent=1.5, avent=0.5, agr=0.1, ints=2.0)
    d = decide(mm, CFG)
    assert (d.state, d.action) == ("adaptive", "best_of_n")
    assert d.params.n_samples == 5
    assert d.params.temperature == pytest.approx(0.666 * (1 + 0.3 * 3.0 + 0.2 * 2.0 - 0.2 * 0.1))
    assert d.params.top_p == pytest.approx(min(1.0, 0.9 * (1 + 0.1 * 0.5)))
    assert d.params.top_k == round(27 * (1 + 0.3 * 2.0 - 0.2 * 0.1)) == 43
    assert d.params.min_p == 0.01  # 0.03 * (1 - 0.5 * 3) < 0 -> clipped to 0.01
    d = decide(m(0.2, 0.2, ints=10.0), CFG)
    assert d.params.top_k == 100  # clipped
    assert d.params.min_p == pytest.approx(0.03 * (1 - 0.5 * 0.4))
    # (1 - ent) .1 + (1 - aent) .2 + (1 - vent) .3 + (1 - avent) .4 + agr .5 + ints .6
    expected = 0.0 * 0.1 + (1 - 1.5) * 0.2 + (1 - 2.0) * 0.3 + 0.5 * 0.4 + 0.1 * 0.5 + 2.0 * 0.6
    assert decide(mm, CFG).score_bonus == pytest.approx(expected)


def test_normal_and_greedy_report_state_but_keep_their_policy():
    d = decide(m(6.0, 6.0), CFG, mode="normal")
    assert (d.state, d.action) == ("resampling", "sample")
    assert d.params == SamplingParams(temperature=0.666, top_p=0.9, top_k=27, min_p=0.03)
    d = decide(m(6.0, 6.0), CFG, mode="greedy", can_clarify=True)
    assert (d.state, d.action) == ("resampling", "argmax")


LOGITS = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))


def chain(**kw) -> tuple[list[int], np.ndarray]:
    base = dict(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0)
    ids, probs = filter_distribution(LOGITS, SamplingParams(**{**base, **kw}))
    return ids.tolist(), probs


def test_filter_chain_each_filter():
    assert chain()[0] == [0, 1, 2, 3, 4]
    assert chain(top_k=2)[0] == [0, 1]
    assert chain(min_p=0.31)[0] == [0, 1]  # keeps p >= 0.31 * 0.5 (relative to the top)
    assert chain(min_p=0.29)[0] == [0, 1, 2]
    # top_p keeps the smallest descending prefix reaching the mass (the JAX original flipped to
    # ascending order and dropped the likeliest tokens instead).
    assert chain(top_p=0.49)[0] == [0]
    assert chain(top_p=0.51)[0] == [0, 1]
    assert chain(top_p=0.86)[0] == [0, 1, 2, 3]
    ids, probs = chain(top_p=0.7)
    assert ids == [0, 1]
    np.testing.assert_allclose(probs, [0.5 / 0.7, 0.2 / 0.7])


def test_filter_chain_order_min_p_renormalises_before_top_p():
    # min_p 0.25 drops p < .125 (ids 3, 4); the kept mass .85 is renormalised, so top_p .8
    # needs .8 * .85 = .68 -> ids 0, 1 (cumulative before id 2 is .7/.85 = .82 >= .8).
    assert chain(min_p=0.25, top_p=0.8)[0] == [0, 1]
    assert chain(min_p=0.25, top_p=0.83)[0] == [0, 1, 2]


def test_filter_chain_always_keeps_a_token_and_temperature_zero_is_argmax():
    assert chain(top_p=1e-9, min_p=1.0, top_k=1)[0] == [0]
    assert chain(top_p=1e-9)[0] == [0]
    assert chain(min_p=1.0)[0] == [0]
    assert chain(temperature=0.0)[0] == [0]


def test_temperature_sharpens_and_flattens():
    _, cold = chain(temperature=0.5)
    _, hot = chain(temperature=2.0)
    assert cold[0] > 0.5 > hot[0]
    np.testing.assert_allclose(cold, np.array([0.5, 0.2, 0.15, 0.1, 0.05]) ** 2 / 0.325)


def test_draw_is_seeded_and_independent_per_candidate():
    ids, probs = np.arange(5), np.full(5, 0.2)
    a = draw(ids, probs, step_rng(7, 3), 64)
    b = draw(ids, probs, step_rng(7, 3), 64)
    c = draw(ids, probs, step_rng(7, 4), 64)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()
    assert len(set(a.tolist())) > 1  # the n candidates are real, distinct draws
    counts = np.bincount(
        draw(ids, np.array([0.7, 0.1, 0.1, 0.1, 0.0]), step_rng(1, 0), 20000), minlength=5
    )
    assert counts[4] == 0 and abs(counts[0] / 20000 - 0.7) < 0.02
