"""The decision tree (every branch and boundary, exact parameters) and the filter chain."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.config import SamplerConfig
from mlx_entropix.uncertainty.sampler import (
    ACTIONS,
    Plan,
    candidate_width,
    classify_states,
    decide,
    filter_probs,
    sample,
    step_key,
    top_candidates,
)

import mlx.core as mx
import numpy as np
import pytest

CFG = SamplerConfig()  # the original entropix defaults


def m(ent, vent, aent=1.0, avent=0.5, agr=0.2, ints=2.0) -> list[float]:
    return [ent, vent, aent, avent, agr, ints]


def plan(metrics: list[float], mode="entropix", can_clarify=False, cfg=CFG) -> dict:
    p = decide(mx.array([metrics]), cfg, mode, mx.array([can_clarify]))
    names = ["state", "action", "temperature", "top_p", "top_k", "min_p", "n"]
    out = {k: v.tolist()[0] for k, v in zip(names, p.arrays(), strict=True)}
    out["state"] = classify_states([metrics], cfg)[0]
    out["action"] = ACTIONS[out["action"]]
    return out


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
    assert classify_states([m(ent, vent)], CFG) == [state]


def test_flowing_is_argmax():
    p = plan(m(0.01, 0.01))
    assert (p["state"], p["action"], p["temperature"], p["top_k"]) == ("flowing", "argmax", 0, 1)


def test_treading_clarifies_once_then_samples_warmer():
    p = plan(m(6.0, 0.0, aent=2.0), can_clarify=True)
    assert (p["state"], p["action"]) == ("treading", "clarify")
    p = plan(m(6.0, 0.0, aent=2.0), can_clarify=False)
    assert p["action"] == "sample"
    assert p["temperature"] == pytest.approx(0.666 * (1.3 + 0.2 * 2.0))
    assert (p["top_p"], p["top_k"], p["min_p"]) == pytest.approx((0.9, 27, 0.03))
    assert plan(m(6.0, 0.0, aent=10.0))["temperature"] == pytest.approx(1.5)  # capped


def test_exploring_parameters():
    p = plan(m(1.0, 6.0, agr=0.2, ints=0.5))
    assert (p["state"], p["action"]) == ("exploring", "sample")
    assert p["temperature"] == pytest.approx(0.666 * (1.2 + 0.3 * 0.5))
    assert p["top_k"] == int(27 * (1 + 0.5 * 0.8)) == 37
    # min(1.5, ...), not the MLX port's min(1, 5, ...) that capped T at 1.0
    assert plan(m(1.0, 6.0, agr=0.2, ints=5.0))["temperature"] == pytest.approx(1.5)
    assert plan(m(1.0, 6.0, agr=30.0))["top_k"] == 5  # floor


def test_resampling_parameters():
    p = plan(m(6.0, 6.0, aent=1.0, avent=4.0))
    assert (p["state"], p["action"]) == ("resampling", "sample")
    assert p["temperature"] == pytest.approx(0.666 * (2.0 + 0.5 * 4.0))
    assert p["top_p"] == pytest.approx(0.9 - 0.2 * 1.0)
    p = plan(m(6.0, 6.0, aent=3.0, avent=0.0))
    assert p["temperature"] == pytest.approx(2.0)  # floor
    assert p["top_p"] == pytest.approx(0.5)  # floor


def test_adaptive_parameters():
    mm = m(1.0, 2.0, aent=1.5, avent=0.5, agr=0.1, ints=2.0)
    p = plan(mm)
    assert (p["state"], p["action"], p["n"]) == ("adaptive", "best_of_n", 5)
    assert p["temperature"] == pytest.approx(0.666 * (1 + 0.3 * 3.0 + 0.2 * 2.0 - 0.2 * 0.1))
    assert p["top_p"] == pytest.approx(min(1.0, 0.9 * (1 + 0.1 * 0.5)))
    assert p["top_k"] == round(27 * (1 + 0.3 * 2.0 - 0.2 * 0.1)) == 43
    assert p["min_p"] == pytest.approx(0.01)  # 0.03 * (1 - 0.5 * 3) < 0 -> clipped to 0.01
    p = plan(m(0.2, 0.2, ints=10.0))
    assert p["top_k"] == 100  # clipped
    assert p["min_p"] == pytest.approx(0.03 * (1 - 0.5 * 0.4))


def test_extreme_coefficients_do_not_overflow():
    cfg = CFG.merged({"ada_top_k_int": 1e30, "lehv_interaction_strength_coef": 1e30})
    assert plan(m(1.0, 2.0), cfg=cfg)["top_k"] == 100
    assert plan(m(1.0, 6.0, agr=-1e30), cfg=cfg)["top_k"] > 0


def test_normal_and_greedy_report_state_but_keep_their_policy():
    p = plan(m(6.0, 6.0), mode="normal")
    assert (p["state"], p["action"]) == ("resampling", "sample")
    assert (p["temperature"], p["top_p"], p["top_k"], p["min_p"], p["n"]) == pytest.approx(
        (0.666, 0.9, 27, 0.03, 1)
    )
    p = plan(m(6.0, 6.0), mode="greedy", can_clarify=True)
    assert (p["state"], p["action"], p["temperature"]) == ("resampling", "argmax", 0)


def test_batched_rows_decide_independently():
    p = decide(mx.array([m(0.01, 0.01), m(6.0, 6.0), m(1.0, 2.0)]), CFG)
    assert p.state.tolist() == [0, 3, 4]
    assert [ACTIONS[a] for a in p.action.tolist()] == ["argmax", "sample", "best_of_n"]


PROBS = np.array([0.5, 0.2, 0.15, 0.1, 0.05])


def params(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, n=1) -> Plan:
    f = lambda v: mx.array([v], dtype=mx.float32)  # noqa: E731
    i = lambda v: mx.array([v], dtype=mx.int32)  # noqa: E731
    return Plan(i(4), i(2), f(temperature), f(top_p), i(top_k), f(min_p), i(n))


def chain(probs=PROBS, **kw) -> tuple[list[int], np.ndarray]:
    logits = mx.array(np.log(probs)[None], dtype=mx.float32)
    ids, cand = top_candidates(logits, logits.shape[-1])
    weights, keep = filter_probs(logits, cand, params(**kw))
    kept = np.array(keep[0])
    x = np.array(weights[0])[kept]
    w = np.exp(x - x.max())
    return np.array(ids[0])[kept].tolist(), w / w.sum()


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
    np.testing.assert_allclose(probs, [0.5 / 0.7, 0.2 / 0.7], rtol=1e-5)


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
    np.testing.assert_allclose(cold, PROBS**2 / 0.325, rtol=1e-5)


def test_candidate_width_covers_every_branch():
    assert candidate_width(CFG, "greedy", 1000) == 1
    assert candidate_width(CFG, "normal", 1000) == 27
    assert candidate_width(CFG, "entropix", 1000) == 100  # adaptive can reach 100
    assert candidate_width(CFG.merged({"top_k": 200}), "entropix", 1000) == 301  # fork: 1.5x
    assert candidate_width(CFG.merged({"top_k": 0}), "normal", 1000) == 1000  # disabled


def draws(probs, n_samples, steps=300) -> np.ndarray:
    logits = mx.array(np.log(probs)[None], dtype=mx.float32)
    p = params(n=n_samples)
    return np.array(
        [sample(logits, p, step_key(5, s), len(probs), n_samples)[0].item() for s in range(steps)]
    )


def test_sampling_is_seeded_and_follows_the_distribution():
    logits = mx.array(np.log(PROBS)[None], dtype=mx.float32)
    one = [sample(logits, params(), step_key(7, s), 5, 1)[0].item() for s in range(40)]
    again = [sample(logits, params(), step_key(7, s), 5, 1)[0].item() for s in range(40)]
    other = [sample(logits, params(), step_key(8, s), 5, 1)[0].item() for s in range(40)]
    assert one == again and one != other
    freq = np.bincount(draws(PROBS, 1, 2000), minlength=5) / 2000
    np.testing.assert_allclose(freq, PROBS, atol=0.035)


def test_best_of_n_candidates_are_independent_draws():
    # With 5 independent draws the top token is among them with p = 1 - 0.6^5 = 0.92; had the
    # draws shared one key (a bug of a fork of the MLX port) it would stay at 0.4.
    probs = np.array([0.4, 0.3, 0.3])
    assert np.mean(draws(probs, 1) == 0) < 0.55
    assert np.mean(draws(probs, 5) == 0) > 0.85


def test_the_originals_constant_score_is_gone():
    """The original's adaptive score was equal for every candidate of a step, so it could not
    change the pick: it is neither computed nor configured; old config files still load."""
    import json

    assert "bonus" not in Plan.__dataclass_fields__
    assert not [k for k in SamplerConfig.model_fields if k.startswith("ada_score")]
    legacy = {**SamplerConfig().model_dump(), "ada_score_agree": 0.5, "ada_score_int": 0.6}
    path = Path(tempfile.mkdtemp()) / "original.json"
    path.write_text(json.dumps(legacy))
    assert SamplerConfig.from_file(path) == SamplerConfig()
