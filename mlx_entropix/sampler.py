"""The entropix decision and the sampling filter chain: pure functions, no model needed.

``decide(metrics, config, ...)`` places a token in a quadrant of (entropy, varentropy) and picks
how to sample it, following the original entropix (xjdr-alt/entropix@eaaddb2 ``sampler.py``).
``filter_distribution`` and ``draw`` then turn full-vocabulary logits into a token on the host
with numpy (the candidate set is tiny; the device work is the forward pass and the metrics).

Known bugs of the reference implementations that are deliberately *not* reproduced:
- min_p was computed but never applied (JAX): here it is applied, relative to the top token.
- top_p was applied on the ascending order after top_k, dropping the *likeliest* tokens (JAX):
  here it keeps the smallest descending prefix whose mass reaches top_p.
- one fixed PRNG key (1337) was reused every step, and a fork of the MLX port made all adaptive
  draws share one key: here every step gets its own generator derived from (seed, step), and
  the n adaptive candidates are independent draws from it.
- the MLX port capped the fork temperature with ``min(1, 5, x)`` (T <= 1.0): here it is
  ``min(1.5, x)`` as in the original.
- the torch port's attention varentropy (wrong axis, always 0) and the zero-padded cache
  (attention entropy ~12 bits) are handled in ``metrics.py`` / ``model.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .config import Mode, SamplerConfig
from .events import Action, SamplingParams, State

# Constants the original hard-codes (they are not part of its SamplerConfig).
MAX_CAREFUL_TEMPERATURE = 1.5  # cap of the "treading" and "fork" temperatures
MIN_MIST_TEMPERATURE = 2.0  # floor of the "mist" temperature
FORK_TOP_K_COEF = 0.5  # top_k grows by (1 + 0.5 * (1 - agreement)) at a fork
MIN_FORK_TOP_K = 5
MIST_TOP_P_COEF = 0.2  # top_p shrinks by 0.2 * attn_entropy in the mist...
MIN_MIST_TOP_P = 0.5  # ...but not below 0.5
ADAPTIVE_MAX_TOP_K = 100


class StepMetrics(NamedTuple):
    """The six metrics of one step as plain floats (see ``metrics.py`` for definitions)."""

    entropy: float
    varentropy: float
    attn_entropy: float
    attn_varentropy: float
    agreement: float
    interaction_strength: float


@dataclass(frozen=True)
class Decision:
    state: State
    action: Action
    params: SamplingParams
    score_bonus: float = 0.0  # adaptive: confidence score added to each candidate's logprob


def classify(m: StepMetrics, cfg: SamplerConfig) -> State:
    """The quadrant of (entropy, varentropy), tested in the original's order."""
    ent, vent = m.entropy, m.varentropy
    if ent < cfg.low_ent and vent < cfg.low_vent:
        return "flowing"
    if ent > cfg.high_ent and vent < cfg.low_vent:
        return "treading"
    if ent < cfg.high_ent and vent > cfg.high_vent:
        return "exploring"
    if ent > cfg.med_ent and vent > cfg.high_vent:
        return "resampling"
    return "adaptive"


def _base(cfg: SamplerConfig) -> SamplingParams:
    return SamplingParams(
        temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, min_p=cfg.min_p
    )


GREEDY = SamplingParams(temperature=0.0, top_p=1.0, top_k=1, min_p=0.0)


def decide(
    m: StepMetrics,
    cfg: SamplerConfig,
    mode: Mode = "entropix",
    can_clarify: bool = False,
) -> Decision:
    """How to pick this token. The state is reported in every mode; only entropix acts on it.

    ``can_clarify``: the clarifying token exists and has not been inserted yet in this
    generation (the original inserts it at most once).
    """
    state = classify(m, cfg)
    if mode == "greedy":
        return Decision(state, "argmax", GREEDY)
    if mode == "normal":
        return Decision(state, "sample", _base(cfg))

    t0 = cfg.temperature
    if state == "flowing":
        return Decision(state, "argmax", GREEDY)
    if state == "treading":
        if can_clarify:
            return Decision(state, "clarify", GREEDY)
        temp = min(
            MAX_CAREFUL_TEMPERATURE,
            t0 * (cfg.helv_attn_ent_offset + cfg.helv_attn_ent_coef * m.attn_entropy),
        )
        return Decision(state, "sample", _base(cfg).model_copy(update={"temperature": temp}))
    if state == "exploring":
        temp = min(
            MAX_CAREFUL_TEMPERATURE,
            t0
            * (
                cfg.lehv_interaction_strength_offset
                + cfg.lehv_interaction_strength_coef * m.interaction_strength
            ),
        )
        top_k = max(MIN_FORK_TOP_K, int(cfg.top_k * (1 + FORK_TOP_K_COEF * (1 - m.agreement))))
        params = _base(cfg).model_copy(update={"temperature": temp, "top_k": top_k})
        return Decision(state, "sample", params)
    if state == "resampling":
        temp = max(
            MIN_MIST_TEMPERATURE,
            t0 * (cfg.hehv_attn_vent_offset + cfg.hehv_attn_vent_coef * m.attn_varentropy),
        )
        top_p = max(MIN_MIST_TOP_P, cfg.top_p - cfg.hehv_attn_ent_coef * m.attn_entropy)
        params = _base(cfg).model_copy(update={"temperature": temp, "top_p": top_p})
        return Decision(state, "sample", params)

    # Adaptive: every parameter scaled by the metrics, then the best of n draws.
    logits_unc = m.entropy + m.varentropy
    attn_unc = m.attn_entropy + m.attn_varentropy
    temp = t0 * (
        1
        + cfg.ada_temp_logits * logits_unc
        + cfg.ada_temp_attn * attn_unc
        - cfg.ada_temp_agree * m.agreement
    )
    top_p = float(np.clip(cfg.top_p * (1 + cfg.ada_top_p * m.attn_varentropy), 0.1, 1.0))
    # Clip before rounding: extreme coefficients must not overflow int().
    top_k_scale = 1 + cfg.ada_top_k_int * m.interaction_strength - cfg.ada_top_k_agree * m.agreement
    top_k = round(float(np.clip(cfg.top_k * top_k_scale, 1, ADAPTIVE_MAX_TOP_K)))
    min_p = float(np.clip(cfg.min_p * (1 - cfg.ada_min_p * logits_unc), 0.01, 0.5))
    # The original's confidence score: identical for every candidate of this step, so the
    # best-of-n pick is the most likely draw; kept so scores are comparable to the original.
    bonus = (
        (1 - m.entropy) * cfg.ada_score_logits_ent
        + (1 - m.attn_entropy) * cfg.ada_score_attn_ent
        + (1 - m.varentropy) * cfg.ada_score_logits_vent
        + (1 - m.attn_varentropy) * cfg.ada_score_attn_vent
        + m.agreement * cfg.ada_score_agree
        + m.interaction_strength * cfg.ada_score_int
    )
    params = SamplingParams(
        temperature=max(temp, 0.0),
        top_p=top_p,
        top_k=top_k,
        min_p=min_p,
        n_samples=cfg.n_adaptive_samples,
    )
    return Decision(state, "best_of_n", params, score_bonus=bonus)


def filter_distribution(
    logits: np.ndarray, params: SamplingParams
) -> tuple[np.ndarray, np.ndarray]:
    """The filter chain on one step's logits: (candidate ids, their probabilities).

    Order: temperature, then min_p relative to the top probability, then top_p on the
    descending cumulative mass, then top_k. Each keeps a descending prefix that always holds
    the top token, so at least one token survives. A temperature of 0 means argmax.
    """
    top = int(np.argmax(logits))
    if params.temperature <= 0.0 or params.top_k == 1:
        return np.array([top]), np.array([1.0])
    z = logits.astype(np.float64) / params.temperature
    p = np.exp(z - z[top])
    p /= p.sum()
    keep = p >= params.min_p * p[top] if params.min_p > 0.0 else None
    mass = p[keep].sum() if keep is not None else 1.0  # renormalise after min_p

    # top_p and top_k both keep a prefix of the descending order, so only the first
    # top_k candidates ever need sorting (argpartition is O(V)).
    vocab = p.shape[0]
    k = params.top_k if 0 < params.top_k < vocab else vocab
    ids = np.argpartition(-p, k - 1)[:k] if k < vocab else np.arange(vocab)
    if keep is not None:
        ids = ids[keep[ids]]
    ids = ids[np.argsort(-p[ids], kind="stable")]
    if params.top_p < 1.0:
        before = (np.cumsum(p[ids]) - p[ids]) / mass  # mass strictly before each candidate
        ids = ids[before < params.top_p]
    probs = p[ids]
    return ids, probs / probs.sum()


def draw(ids: np.ndarray, probs: np.ndarray, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """n independent draws from the categorical (ids, probs)."""
    if ids.size == 1:
        return np.repeat(ids, n)
    cdf = np.cumsum(probs)
    idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    return ids[np.minimum(idx, ids.size - 1)]


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of one step: its own stream, derived from (request seed, step)."""
    return np.random.Generator(np.random.Philox(key=[seed & (2**64 - 1), step]))
