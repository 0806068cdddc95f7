"""Entropix as a sampler for mlx-lm's own loop: ``mlx_lm.generate(..., sampler=make_sampler())``.

mlx-lm calls ``sampler(logprobs (B, V)) -> tokens (B,)`` once per generated token, right after
the model's forward pass. This sampler computes the metrics, decides and draws with the same
functions as our engine (``metrics.py``, ``sampler.py``) and the same per-step keys
(``step_key(seed, step)``), so on the same weights, prompt ids and seed it picks the tokens
``generate.generate`` picks. Given the model, it also observes the last layer's attention
(``families.py``) for the four attention metrics; without it (or where the family's attention
cannot be observed) the decision uses its logits-only rules.
"""

from __future__ import annotations

import secrets
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from .config import Mode, SamplerConfig
from .models.families import observe_last_attention
from .uncertainty.metrics import compute_metrics
from .uncertainty.sampler import CLARIFY, candidate_width, decide, sample, step_key, top_candidates

__all__ = ["EntropixSampler", "make_sampler"]
_ENGINE_TOP_LOGPROBS = 5  # the engine's default width floor: same width, same draws


class EntropixSampler:
    """An mlx-lm sampler running entropix (``mode`` "normal"/"greedy": our other policies),
    stateful: one instance per generation (it counts steps).

    - ``config``: the thresholds and coefficients (default: the original entropix's).
    - ``model``: the mlx-lm model, to observe its last attention layer: six metrics instead
      of two (``any_family``: also families outside ``families.VERIFIED``).
    - ``tokenizer``: to insert the clarifying token (" ...") as the original does.
    - ``seed``: per-step keys ``step_key(seed, step)``; a new generation needs a new sampler
      (or ``sampler.reset()``).

    After each call, ``last_metrics`` (B, 6) and ``last_state`` (B,) hold that step's metrics
    and state index into ``events.STATES`` (lazy arrays: reading them costs a host sync).
    """

    def __init__(
        self,
        config: SamplerConfig | None = None,
        *,
        mode: Mode = "entropix",
        seed: int | None = None,
        model: nn.Module | None = None,
        tokenizer: Any = None,
        any_family: bool = False,
    ):
        if mode not in ("entropix", "normal", "greedy"):
            raise ValueError(f"unknown mode {mode!r} (choose from entropix, normal, greedy)")
        self.config = config or SamplerConfig()
        self.mode: Mode = mode
        self.seed = secrets.randbelow(2**31) if seed is None else int(seed)
        self.step = 0
        self._observation = observe_last_attention(model, any_family) if model is not None else None
        self.attention_observed = self._observation is not None
        self.clarify_id = _single_token(tokenizer, self.config.clarifying_token)
        self._can_clarify: mx.array | None = None
        self.last_metrics: mx.array | None = None
        self.last_state: mx.array | None = None

    def reset(self, seed: int | None = None) -> None:
        """Start a new generation (step 0, the clarifying token allowed again)."""
        self.step, self._can_clarify = 0, None
        if seed is not None:
            self.seed = int(seed)

    def __call__(self, logprobs: mx.array) -> mx.array:
        logprobs = logprobs.astype(mx.float32)
        B, V = logprobs.shape
        scores = self._observation.scores if self._observation is not None else None
        if scores is not None and scores.shape[0] != B:
            scores = None
        if self._can_clarify is None or self._can_clarify.shape[0] != B:
            self._can_clarify = mx.full((B,), self.clarify_id is not None)
        cfg = self.config
        metrics = compute_metrics(logprobs, scores)
        plan = decide(metrics, cfg, self.mode, self._can_clarify)
        width = max(candidate_width(cfg, self.mode, V), _ENGINE_TOP_LOGPROBS)
        if self.mode == "greedy":
            token = top_candidates(logprobs, width)[0][:, 0]
        else:
            n_max = cfg.n_adaptive_samples if self.mode == "entropix" else 1
            token, _, _ = sample(logprobs, plan, step_key(self.seed, self.step), width, n_max)
        if self.clarify_id is not None:
            token = mx.where(plan.action == CLARIFY, self.clarify_id, token)
        self._can_clarify = self._can_clarify & (plan.action != CLARIFY)
        self.last_metrics, self.last_state = metrics, plan.state
        self.step += 1
        return token


def _single_token(tokenizer: Any, text: str | None) -> int | None:
    """The id of ``text`` if the tokenizer makes it one token (the clarifying token)."""
    if tokenizer is None or not text:
        return None
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        ids = tokenizer.encode(text)
    return int(ids[0]) if len(ids) == 1 else None


make_sampler = EntropixSampler  # the name mlx-lm's own ``make_sampler`` suggests
