"""Calibration of the whole policy (``eval/calibrate.py``) and the shipped configs."""

from __future__ import annotations

import math

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.config import CONFIG_DIR, SamplerConfig, apply_preset
from mlx_entropix.eval.calibrate import (
    fit_policy,
    fit_thresholds,
    heat_policy,
    propose,
    state_shares,
)
from mlx_entropix.uncertainty.sampler import decide

import mlx.core as mx
import numpy as np
import pytest


def synthetic_metrics(n: int = 4000, seed: int = 0) -> np.ndarray:
    """Metrics on a small model's scale: H + V routinely 3-12 bits."""
    rng = np.random.default_rng(seed)
    ent = rng.gamma(2.0, 0.8, n)
    vent = ent * rng.uniform(0.5, 3.0, n)
    aent = rng.normal(2.7, 0.4, n).clip(0.1)
    avent = rng.gamma(2.0, 0.35, n)
    agr = rng.uniform(0.0, 0.05, n)
    ints = rng.normal(2.4, 0.5, n).clip(0.1)
    return np.stack([ent, vent, aent, avent, agr, ints], axis=1)


def params(cfg: SamplerConfig, rows: list[list[float]]) -> dict[str, list[float]]:
    plan = decide(mx.array(rows, dtype=mx.float32), cfg, "entropix")
    return {"state": plan.state.tolist(), "T": plan.temperature.tolist(),
            "min_p": plan.min_p.tolist()}  # fmt: skip


def test_fit_policy_maps_the_adaptive_spread_onto_the_band():
    metrics = synthetic_metrics()
    base = propose(metrics)
    cfg = fit_policy(metrics, base, band=(0.1, 0.3), adaptive_min_p=0.1)
    # The spread of H + V over the tokens the thresholds call adaptive.
    adaptive = [
        m for m, s in zip(metrics.tolist(), params(base, metrics.tolist())["state"], strict=True)
        if s == 4
    ]  # fmt: skip
    u = np.array([m[0] + m[1] for m in adaptive])
    u10, u90 = np.quantile(u, [0.1, 0.9])
    t = cfg.temperature * (cfg.ada_temp_offset + cfg.ada_temp_logits * np.array([u10, u90]))
    assert t == pytest.approx([0.1, 0.3], abs=1e-4)
    temps = np.array(params(cfg, adaptive)["T"])
    inside = np.mean((temps >= 0.1 - 1e-6) & (temps <= 0.3 + 1e-6))
    assert inside == pytest.approx(0.8, abs=0.02)  # the middle 80% lie in the band
    min_p = np.array(params(cfg, adaptive)["min_p"])
    assert min_p.max() <= 0.1 + 1e-6 and np.median(min_p) > 0.05  # not pinned at the 0.01 clip
    # Normal mode's fixed parameters are untouched; the mist is off.
    assert (cfg.temperature, cfg.min_p, cfg.top_p, cfg.top_k) == (0.666, 0.03, 0.9, 27)
    assert cfg.high_ent > math.log2(49152)


def test_fit_policy_is_pure_and_checks_its_band():
    metrics = synthetic_metrics(seed=1)
    base = propose(metrics)
    assert fit_policy(metrics, base) == fit_policy(metrics, base)
    assert fit_policy(metrics, base, mist=True).high_ent == base.high_ent
    with pytest.raises(ValueError):
        fit_policy(metrics, base, band=(0.3, 0.1))
    with pytest.raises(ValueError):  # so wide it would need T < 0 at H + V = 0
        fit_policy(metrics, base, band=(0.01, 5.0))


def test_precise_preset_is_moderate_where_the_reference_ran_hot():
    """The "precise" preset (the policy shipped before issue 22, on today's thresholds):
    adaptive T inside [0.1, 0.3] over the old dev split's middle 80% of H + V (2.86 to 10.86
    bits, benchmarks/results/policy_search.md) where the reference's coefficients give 1.2-2.9;
    the fork temperature stays far below. (Rows moved within the same H + V so that they stay
    adaptive under the refitted thresholds: low_ent 0.96, low_vent 9.3.)"""
    shipped = apply_preset(SamplerConfig.from_file(CONFIG_DIR / "smollm2-135m-instruct.json"),
                           "precise")  # fmt: skip
    reference = SamplerConfig.from_file("reference")
    assert reference == SamplerConfig()
    rows = [[1.0, 1.862, 2.7, 0.67, 0.02, 2.4], [2.9, 7.959, 2.7, 0.67, 0.02, 2.4]]
    mine, ref = params(shipped, rows), params(reference.merged({
        k: getattr(shipped, k) for k in ("low_ent", "low_vent", "med_ent", "high_ent", "high_vent")
    }), rows)  # fmt: skip
    assert mine["state"] == ref["state"] == [4, 4]
    assert mine["T"] == pytest.approx([0.1, 0.3], abs=1e-3)
    assert min(ref["T"]) > 1.0
    assert all(0.04 < p <= 0.1 for p in mine["min_p"])
    fork = params(shipped, [[0.9, 13.0, 2.7, 0.67, 0.02, 2.4]])
    assert fork["state"] == [2] and fork["T"][0] < 0.1
    # Normal mode keeps the reference's fixed parameters.
    assert (shipped.temperature, shipped.top_p, shipped.top_k, shipped.min_p) == (
        reference.temperature, reference.top_p, reference.top_k, reference.min_p
    )  # fmt: skip


def test_a_shipped_config_by_name_and_a_missing_one():
    assert SamplerConfig.from_file("smollm2-135m-instruct").fork_trigger == "first"
    with pytest.raises(FileNotFoundError):
        SamplerConfig.from_file("no-such-config")


def test_fit_thresholds_makes_every_state_occur():
    """Varentropy grows with entropy (as on the embedded model): fixed quantiles leave
    "treading" (high entropy, low varentropy) empty; the target-share fit reaches it."""
    metrics = synthetic_metrics(n=600, seed=2)
    quantile = state_shares(metrics, propose(metrics))
    cfg = fit_thresholds(metrics)
    shares = state_shares(metrics, cfg)
    assert quantile["treading"] < 0.02 <= min(shares.values())
    assert cfg.high_ent < math.log2(49152)
    assert fit_thresholds(metrics) == cfg  # pure
    with pytest.raises(ValueError, match="every state"):
        fit_thresholds(metrics, min_share=0.3)


def test_heat_policy_gates_the_adaptive_temperature():
    metrics = synthetic_metrics(n=600, seed=3)
    base = fit_thresholds(metrics)
    cfg = heat_policy(metrics, base, heat=1.0, gate=0.5)
    states = np.array(params(base, metrics.tolist())["state"])
    adaptive = metrics[states == 4]
    u = adaptive[:, 0] + adaptive[:, 1]
    temps = np.array(params(cfg, adaptive.tolist())["T"])
    assert np.mean(temps == 0.0) == pytest.approx(0.5, abs=0.03)  # argmax below the gate
    assert np.interp(np.quantile(u, 0.9), np.sort(u), np.sort(temps)) == pytest.approx(
        1.0, abs=0.05
    )
    assert cfg.mist_min_temperature == 1.0 and cfg.n_adaptive_samples == 1
    hotter = heat_policy(metrics, base, heat=1.5)
    assert hotter.lehv_interaction_strength_offset > cfg.lehv_interaction_strength_offset
    with pytest.raises(ValueError):
        heat_policy(metrics, base, heat=0.0)
