"""The six metrics against values computed by hand or in plain numpy."""

from __future__ import annotations

import math

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.uncertainty.metrics import attention_metrics, compute_metrics, logits_entropy

import mlx.core as mx
import numpy as np
import pytest


def np_entropy(logits: np.ndarray) -> tuple[float, float]:
    z = logits.astype(np.float64)
    logp = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
    p, log2p = np.exp(logp), logp / math.log(2)
    h = -np.sum(p * log2p)
    return h, np.sum(p * (log2p + h) ** 2)


def ent(logits) -> tuple[float, float]:
    h, v = logits_entropy(mx.array([logits], dtype=mx.float32))
    return h.item(), v.item()


def test_uniform_is_log2_v_with_no_varentropy():
    h, v = ent([0.0] * 1024)
    assert h == pytest.approx(10.0, abs=1e-4)  # bits, not nats (ln 1024 = 6.93)
    assert v == pytest.approx(0.0, abs=1e-4)


def test_one_hot_is_certain():
    h, v = ent([100.0] + [0.0] * 99)
    assert h == pytest.approx(0.0, abs=1e-3)
    assert v == pytest.approx(0.0, abs=1e-3)


def test_two_peaks_and_three_levels_by_hand():
    # p = (1/2, 1/2): H = 1 bit, every token at the mean surprise: V = 0.
    h, v = ent([0.0, 0.0, -1e4, -1e4])
    assert (h, v) == pytest.approx((1.0, 0.0), abs=1e-4)
    # p = (1/2, 1/4, 1/4): H = 1.5; V = .5(1-1.5)^2 + 2*.25(2-1.5)^2 = 0.25.
    h, v = ent([math.log(2), 0.0, 0.0])
    assert (h, v) == pytest.approx((1.5, 0.25), abs=1e-5)


def test_random_logits_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4, 5000)).astype(np.float32)
    h, v = logits_entropy(mx.array(logits))
    for row, hh, vv in zip(logits, np.array(h), np.array(v), strict=True):
        eh, ev = np_entropy(row)
        assert hh == pytest.approx(eh, rel=1e-4)
        assert vv == pytest.approx(ev, rel=1e-3)


def attn(scores) -> tuple[float, ...]:
    return tuple(x.item() for x in attention_metrics(mx.array([scores], dtype=mx.float32)))


def test_identical_heads_agree_and_do_not_vary():
    scores = [[0.0, 1.0, 2.0, 3.0]] * 3
    a_ent, a_vent, agree, inter = attn(scores)
    p = np.exp([0.0, 1.0, 2.0, 3.0])
    p /= p.sum()
    assert a_ent == pytest.approx(-np.sum(p * np.log2(p)), abs=1e-5)
    assert a_vent == pytest.approx(0.0, abs=1e-6)
    assert agree == pytest.approx(0.0, abs=1e-7)
    assert inter == pytest.approx(1.5, abs=1e-6)  # mean |score|


def test_mixed_heads_by_hand():
    # Head 0 uniform over 4 keys (2 bits); head 1 all on key 0 (0 bits).
    scores = [[0.0, 0.0, 0.0, 0.0], [60.0, 0.0, 0.0, 0.0]]
    a_ent, a_vent, agree, inter = attn(scores)
    assert a_ent == pytest.approx(1.0, abs=1e-4)  # mean of (2, 0)
    assert a_vent == pytest.approx(1.0, abs=1e-4)  # population variance of (2, 0) across heads
    # mean over heads A = (.625,.125,.125,.125); |A_h - mean| sums to .75 per head; / 8 cells.
    assert agree == pytest.approx(0.1875, abs=1e-5)
    assert inter == pytest.approx(60.0 / 8, abs=1e-5)


def test_attention_varentropy_is_across_heads_numpy():
    rng = np.random.default_rng(1)
    scores = rng.normal(0, 2, size=(2, 9, 37)).astype(np.float32)
    a_ent, a_vent, agree, inter = (np.array(x) for x in attention_metrics(mx.array(scores)))
    a = np.exp(scores - scores.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    head_ent = -np.sum(a * np.log2(np.clip(a, 1e-10, 1)), -1)
    np.testing.assert_allclose(a_ent, head_ent.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(a_vent, head_ent.var(-1), rtol=1e-4)  # ddof=0, axis = heads
    np.testing.assert_allclose(agree, np.abs(a - a.mean(1, keepdims=True)).mean((1, 2)), rtol=1e-4)
    np.testing.assert_allclose(inter, np.abs(scores).mean((1, 2)), rtol=1e-5)


def test_compute_metrics_stacks_in_order():
    out = compute_metrics(mx.zeros((1, 8)), mx.zeros((1, 2, 4)))
    assert out.shape == (1, 6)
    np.testing.assert_allclose(np.array(out[0]), [3.0, 0.0, 2.0, 0.0, 0.0, 0.0], atol=1e-5)
