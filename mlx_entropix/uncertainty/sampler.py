"""The entropix decision and the sampling filter chain, as pure MLX functions on the device.

``decide(metrics, config, mode)`` places each token in a quadrant of (entropy, varentropy) and
picks how to sample it, following the original entropix (xjdr-alt/entropix@eaaddb2
``sampler.py``); ``sample`` applies the filter chain and draws. Both are branch-free array code
(``mx.where`` over the five states), so a whole step stays on the device: the engine can queue
step n+1 before reading step n, as mlx-lm's own generate loop does, and pays one host sync per
token. They are pure (same inputs and key, same outputs) and batched over a leading axis, so
tests and the calibration tool call them directly on hand-made metrics.

Known bugs of the reference implementations that are deliberately *not* reproduced:
- min_p was computed but never applied (JAX): here it is applied, relative to the top token.
- top_p was applied on the ascending order after top_k, dropping the *likeliest* tokens (JAX):
  here it keeps the smallest descending prefix whose mass reaches top_p.
- one fixed PRNG key (1337) was reused every step, and a fork of the MLX port made all adaptive
  draws share one key: here every step has its own key derived from (seed, step), and the n
  adaptive candidates are independent draws under it.
- the MLX port capped the fork temperature with ``min(1, 5, x)`` (T <= 1.0): here it is
  ``min(1.5, x)`` as in the original.
- the torch port's attention varentropy (always 0) and zero-padded cache: see ``metrics.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mlx.core as mx

from ..config import Mode, SamplerConfig
from ..events import ACTIONS, STATES, State
from .metrics import vocab_exp

__all__ = ["ACTIONS", "Plan", "classify", "decide", "sample", "step_key", "unreachable_states"]
FLOWING, TREADING, EXPLORING, RESAMPLING, ADAPTIVE = range(5)  # indices into STATES
ARGMAX, SAMPLE, BEST_OF_N, CLARIFY = (
    ACTIONS.index(a) for a in ("argmax", "sample", "best_of_n", "clarify")
)

# Constants the original hard-codes (they are not part of its SamplerConfig).
MAX_CAREFUL_TEMPERATURE = 1.5  # cap of the "treading" and "fork" temperatures
FORK_TOP_K_COEF = 0.5  # top_k grows by (1 + 0.5 * (1 - agreement)) at a fork
MIN_FORK_TOP_K = 5
MIN_MIST_TOP_P = 0.5  # the mist's top_p shrinks with attention entropy, not below 0.5
ADAPTIVE_MAX_TOP_K = 100


@dataclass(frozen=True)
class Plan:
    """How to pick each token of a batch: arrays of shape (B,)."""

    state: mx.array  # int32 index into STATES
    action: mx.array  # int32 index into ACTIONS
    temperature: mx.array  # 0 means argmax
    top_p: mx.array
    top_k: mx.array  # int32; 0 disables
    min_p: mx.array
    n_samples: mx.array  # int32

    def arrays(self) -> list[mx.array]:
        return list(vars(self).values())  # in field order


def classify(metrics: mx.array, cfg: SamplerConfig) -> mx.array:
    """The state index of each row of (..., 6) metrics, tested in the original's order."""
    ent, vent = metrics[..., 0], metrics[..., 1]
    conditions = [
        (ent < cfg.low_ent) & (vent < cfg.low_vent),  # flowing
        (ent > cfg.high_ent) & (vent < cfg.low_vent),  # treading
        (ent < cfg.high_ent) & (vent > cfg.high_vent),  # exploring
        (ent > cfg.med_ent) & (vent > cfg.high_vent),  # resampling
    ]
    state = mx.full(ent.shape, ADAPTIVE, dtype=mx.int32)
    for index in reversed(range(len(conditions))):  # the first true condition wins
        state = mx.where(conditions[index], index, state)
    return state


def classify_states(metrics: list[list[float]] | mx.array, cfg: SamplerConfig) -> list[State]:
    """``classify`` for host code (plots, calibration): state names of (N, 6) metrics."""
    return [STATES[i] for i in classify(mx.array(metrics, dtype=mx.float32), cfg).tolist()]


def unreachable_states(cfg: SamplerConfig, vocab: int) -> list[State]:
    """States that no (entropy, varentropy) of a distribution over ``vocab`` tokens reaches
    under ``cfg``'s thresholds: a threshold past log2(vocab) bits (the largest entropy), or a
    state shadowed by one tested before it for every input. Exact: the state is constant on
    each cell between consecutive thresholds, so one point per cell is tested."""

    def mids(cuts: list[float], top: float) -> list[float]:
        edges = sorted({min(max(c, 0.0), top) for c in [0.0, *cuts, top]})
        return [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]

    ents = mids([cfg.low_ent, cfg.med_ent, cfg.high_ent], math.log2(vocab))
    vents = mids([cfg.low_vent, cfg.high_vent], max(cfg.low_vent, cfg.high_vent, 0.0) + 1.0)
    grid = [[e, v, 0, 0, 0, 0] for e in ents for v in vents]
    seen = set(classify(mx.array(grid, dtype=mx.float32), cfg).tolist())
    return [s for i, s in enumerate(STATES) if i not in seen]


def _select(state: mx.array, base: float | mx.array, per_state: dict[int, mx.array]) -> mx.array:
    out = mx.broadcast_to(mx.array(base, dtype=mx.float32), state.shape)
    for index, value in per_state.items():
        out = mx.where(state == index, value, out)
    return out


def decide(
    metrics: mx.array,
    cfg: SamplerConfig,
    mode: Mode = "entropix",
    can_clarify: mx.array | bool = False,
) -> Plan:
    """The plan for each row of (B, 6) metrics. The state is reported in every mode; only
    entropix acts on it. ``can_clarify``: the clarifying token exists and has not been
    inserted yet in this generation (the original inserts it at most once)."""
    metrics = metrics.astype(mx.float32)
    # Logits-only rules: unavailable attention metrics (NaN) count as 0, so each state keeps
    # its logits-driven part (e.g. adaptive T = t0 * (1 + ada_temp_logits * (H + V))) and the
    # attention terms drop out; the state itself only ever depends on the logits.
    metrics = mx.where(mx.isnan(metrics), 0.0, metrics)
    ent, vent, aent, avent, agr, ints = (metrics[..., i] for i in range(6))
    state = classify(metrics, cfg)
    one = mx.ones(state.shape, dtype=mx.int32)
    zero = mx.zeros(state.shape, dtype=mx.float32)
    if mode == "greedy":
        return Plan(state, one * ARGMAX, zero, zero + 1, one, zero, one)
    if mode == "normal":
        t, p, k, mp = (zero + v for v in (cfg.temperature, cfg.top_p, cfg.top_k, cfg.min_p))
        return Plan(state, one * SAMPLE, t, p, k.astype(mx.int32), mp, one)

    t0, cap = cfg.temperature, MAX_CAREFUL_TEMPERATURE
    logits_unc, attn_unc = ent + vent, aent + avent
    helv = cfg.helv_attn_ent_offset + cfg.helv_attn_ent_coef * aent
    lehv = cfg.lehv_interaction_strength_offset + cfg.lehv_interaction_strength_coef * ints
    hehv = cfg.hehv_attn_vent_offset + cfg.hehv_attn_vent_coef * avent
    ada = cfg.ada_temp_offset + cfg.ada_temp_logits * logits_unc + cfg.ada_temp_attn * attn_unc
    temperature = _select(state, t0, {
        FLOWING: zero,
        TREADING: mx.minimum(cap, t0 * helv),
        EXPLORING: mx.minimum(cap, t0 * lehv),
        RESAMPLING: mx.maximum(cfg.mist_min_temperature, t0 * hehv),
        ADAPTIVE: mx.maximum(0.0, t0 * (ada - cfg.ada_temp_agree * agr)),
    })  # fmt: skip
    top_p = _select(state, cfg.top_p, {
        RESAMPLING: mx.maximum(MIN_MIST_TOP_P, cfg.top_p - cfg.hehv_attn_ent_coef * aent),
        ADAPTIVE: mx.clip(cfg.top_p * (1 + cfg.ada_top_p * avent), 0.1, 1.0),
    })  # fmt: skip
    # Clip before rounding/flooring, so extreme coefficients cannot overflow the int cast.
    fork_top_k = mx.minimum(cfg.top_k * (1 + FORK_TOP_K_COEF * (1 - agr)), 2**30)
    ada_top_k = cfg.top_k * (1 + cfg.ada_top_k_int * ints - cfg.ada_top_k_agree * agr)
    top_k = _select(state, cfg.top_k, {
        FLOWING: zero + 1,
        EXPLORING: mx.maximum(MIN_FORK_TOP_K, mx.floor(fork_top_k)),
        ADAPTIVE: mx.round(mx.clip(ada_top_k, 1, ADAPTIVE_MAX_TOP_K)),
    }).astype(mx.int32)  # fmt: skip
    ada_min_p = cfg.min_p * (cfg.ada_min_p_offset - cfg.ada_min_p * logits_unc)
    min_p = _select(state, cfg.min_p, {ADAPTIVE: mx.clip(ada_min_p, 0.01, 0.5)})
    n_samples = mx.where(state == ADAPTIVE, cfg.n_adaptive_samples, 1).astype(mx.int32)
    clarify = (state == TREADING) & can_clarify
    # best of n only where there are n > 1 draws (the adaptive state's): one draw is a sample
    action = mx.where(n_samples > 1, BEST_OF_N, _select(state, SAMPLE, {FLOWING: zero + ARGMAX}))
    # Ablation (``greedy_states``): bit ``state`` of the mask set -> argmax, no pause token.
    greedy = mx.remainder(mx.floor(cfg.greedy_mask / mx.power(2.0, state)), 2) > 0
    clarify = clarify & ~greedy
    action = mx.where(greedy, ARGMAX, mx.where(clarify, CLARIFY, action)).astype(mx.int32)
    temperature = mx.where(clarify | greedy, 0.0, temperature)
    top_k = mx.where(greedy, 1, top_k).astype(mx.int32)
    n_samples = mx.where(greedy, 1, n_samples).astype(mx.int32)
    return Plan(state, action, temperature, top_p, top_k, min_p, n_samples)


def candidate_width(cfg: SamplerConfig, mode: Mode, vocab: int) -> int:
    """How many top tokens can ever be kept in this generation: the filters then only need
    a partial sort of that many (O(V)) instead of sorting the vocabulary each step."""
    if mode == "greedy":
        return 1
    if cfg.top_k == 0 or mode == "normal" and cfg.top_k >= vocab:
        return vocab
    if mode == "normal":
        return cfg.top_k
    fork = max(MIN_FORK_TOP_K, int(cfg.top_k * (1 + FORK_TOP_K_COEF)) + 1)  # agreement >= 0
    return min(vocab, max(cfg.top_k, fork, ADAPTIVE_MAX_TOP_K))


def top_candidates(logits: mx.array, width: int) -> tuple[mx.array, mx.array]:
    """(ids, logits) of the ``width`` largest logits of each row, in descending order."""
    if width >= logits.shape[-1]:
        ids = mx.argsort(-logits, axis=-1)
    else:
        ids = mx.argpartition(-logits, kth=width - 1, axis=-1)[..., :width]
        ids = mx.take_along_axis(ids, mx.argsort(-mx.take_along_axis(logits, ids, -1)), -1)
    return ids, mx.take_along_axis(logits, ids, axis=-1)


def filter_probs(logits: mx.array, cand_logits: mx.array, plan: Plan) -> tuple[mx.array, mx.array]:
    """The filter chain over the candidates: (log-weights with -inf where dropped, kept mask).

    Order: temperature, then min_p relative to the top probability, then top_p on the
    descending cumulative mass (of the distribution renormalised after min_p, over the whole
    vocabulary), then top_k. Each keeps a prefix of the descending order that holds the top
    token, so at least one token always survives.
    """
    temp = mx.maximum(plan.temperature, 1e-6)[..., None]
    z = cand_logits.astype(mx.float32) / temp
    # One pass of exp over the vocabulary (costly on a CPU): weights relative to the top
    # token, so min_p compares them with min_p directly.
    weights_all = vocab_exp(logits.astype(mx.float32) / temp - z[..., :1])
    norm = mx.sum(weights_all, axis=-1, keepdims=True)
    min_p = plan.min_p[..., None]
    kept_mass = mx.sum(mx.where(weights_all >= min_p, weights_all, 0.0), axis=-1, keepdims=True)
    weights = mx.exp(z - z[..., :1])
    keep = weights >= min_p
    probs = weights / norm
    before = (mx.cumsum(probs, axis=-1) - probs) / (kept_mass / norm)  # mass before each token
    keep = keep & (before < plan.top_p[..., None])
    rank = mx.arange(z.shape[-1])
    top_k = plan.top_k[..., None]
    keep = keep & ((top_k <= 0) | (rank < top_k)) & ((plan.temperature[..., None] > 0) | (rank < 1))
    keep = keep | (rank < 1)
    return mx.where(keep, z, -mx.inf), keep


def sample(
    logits: mx.array, plan: Plan, key: mx.array, width: int, max_samples: int
) -> tuple[mx.array, mx.array, mx.array]:
    """Pick a token per row: (token ids (B,), candidate ids (B, width), candidate logits).

    Draws ``max_samples`` independent candidates under ``key`` (one key, or one per row: (B, 2))
    and keeps, among the first ``plan.n_samples``, the one with the highest raw log-probability
    (the original added a confidence score that is the same for every candidate of a step, so
    it never changed the pick: it is not computed). Argmax when the plan says so (T = 0).
    """
    ids, cand_logits = top_candidates(logits, width)
    weights, _ = filter_probs(logits, cand_logits, plan)
    if key.ndim == 1:  # one key for the step
        draws = mx.random.categorical(weights, num_samples=max_samples, key=key)  # (B, n)
    else:  # a key per row (rows of several requests): each row draws what it would alone
        rows = range(key.shape[0])
        draws = mx.concatenate([mx.random.categorical(weights[i : i + 1], num_samples=max_samples,
                                                      key=key[i]) for i in rows])  # fmt: skip
    raw = mx.take_along_axis(cand_logits, draws, axis=-1)
    raw = mx.where(mx.arange(max_samples) < plan.n_samples[..., None], raw, -mx.inf)
    best = mx.take_along_axis(draws, mx.argmax(raw, axis=-1, keepdims=True), axis=-1)[..., 0]
    best = mx.where(plan.temperature > 0, best, 0)  # argmax: the first candidate
    token = mx.take_along_axis(ids, best[..., None], axis=-1)[..., 0]
    return token, ids, cand_logits


def step_key(seed: int, step: int) -> mx.array:
    """The PRNG key of one step: its own stream, derived from (request seed, step)."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + 1) & (2**64 - 1)
    x ^= x >> 31  # splitmix64-style mixing so nearby (seed, step) pairs are far apart
    x = (x * 0x94D049BB133111EB) & (2**64 - 1)
    return mx.random.key((x ^ (x >> 29)) & (2**63 - 1))
