"""One decode step on the device, after the forward pass: the decision, the draw and the
packing of everything an event needs into one row of floats per batch row (``Step.packed``),
so the engine reads a whole step in one host sync. Compiled per structural parameters, with
the config entering as an array (``compiled.py``): a new request does not recompile.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import mlx.core as mx

from ..config import Mode, SamplerConfig
from .compiled import ConfigArrays, compiled, config_array
from .metrics import attention_metrics, logits_metrics
from .sampler import CLARIFY, decide, sample, step_key, top_candidates


def from_rank0(x: mx.array, group: mx.distributed.Group) -> mx.array:
    """``x`` as rank 0 has it, on every rank (a broadcast as an all_sum: the others add 0)."""
    return mx.distributed.all_sum(mx.where(group.rank() == 0, x, mx.zeros_like(x)), group=group)


def observe(
    logits: mx.array,
    scores: mx.array | None,
    compile_steps: bool = True,
    head_group: mx.distributed.Group | None = None,
) -> tuple[mx.array, mx.array, mx.array]:
    """What a step reads from a forward pass, lazily: the last position's logits (B, V) in
    float32, the six metrics (B, 6) and the log of the softmax normaliser (B,)."""
    last = logits[:, -1].astype(mx.float32)
    entropy, varentropy, log_norm = compiled(logits_metrics, compile_steps)(last)
    if scores is None:  # a family model whose last attention cannot be observed: unavailable
        attention = [mx.full(entropy.shape, mx.nan, dtype=mx.float32)] * 4
    elif head_group is not None or scores.shape[-1] < 2:  # heads over ranks, or one key: below
        attention = attention_metrics(scores, head_group)
    else:  # shapeless: the scores grow by one key per step, which must not retrace the graph.
        # Never with one key: MLX 0.32's shapeless graph then corrupts memory (a reduction
        # over a size-1 axis, traced or run), crashing the process.
        attention = compiled(attention_metrics, compile_steps, shapeless=True)(scores)
    return last, mx.stack([entropy, varentropy, *attention], axis=-1), log_norm


def observe_requests(
    logits: mx.array,
    scores: Sequence[mx.array] | None,
    compile_steps: bool = True,
    head_group: mx.distributed.Group | None = None,
) -> tuple[mx.array, mx.array, mx.array]:
    """``observe`` for the rows of several requests in two calls instead of two per request
    (a shared batch's step, ``batch.py``): ``logits`` (R, L, V) of all their rows, ``scores``
    each request's (rows, H, K), its own key count, in row order. Each request gets the bits
    ``observe`` gives it alone: the logits metrics are row-wise (no reduction crosses rows;
    measured bitwise for 1 to 8 rows, ``tests/test_batch_decoder.py``), and each request's
    attention keeps its own shape, one input of one shapeless graph. Heads split over ranks
    (``head_group``): request by request, as ``observe``. ``scores`` None: not observed."""
    if scores is None:
        return observe(logits, None, compile_steps)
    if head_group is not None or any(s.shape[-1] < 2 for s in scores):  # see ``observe``
        ends = list(itertools.accumulate(s.shape[0] for s in scores))
        parts = [observe(logits[end - s.shape[0] : end], s, compile_steps, head_group)
                 for s, end in zip(scores, ends, strict=True)]  # fmt: skip
        last, metrics, log_norm = (mx.concatenate(list(p)) for p in zip(*parts, strict=True))
        return last, metrics, log_norm
    last = logits[:, -1].astype(mx.float32)
    entropy, varentropy, log_norm = compiled(logits_metrics, compile_steps)(last)
    attention = compiled(_attention_each, compile_steps, shapeless=True)(*scores)
    logits_part = mx.stack([entropy, varentropy], axis=-1)
    metrics = mx.concatenate([logits_part, mx.concatenate(attention)], axis=-1)
    return last, metrics, log_norm


def _attention_each(*scores: mx.array) -> list[mx.array]:
    return [mx.stack(attention_metrics(s), axis=-1) for s in scores]


class Step(NamedTuple):
    """One step's results, still on the device until the host reads ``packed``: of a batch's
    rows, or of one request's (the shared batch: ``batch.py``)."""

    token: mx.array  # (B,) int32: feeds the next forward pass without a host round trip
    can_clarify: mx.array  # (B,) bool
    # (B, P) float32: token, state, action, 5 params, logprob, 6 metrics, top ids/logprobs
    packed: mx.array

    def arrays(self) -> list[mx.array]:
        return list(self)


class RowPlan(NamedTuple):
    """How one row picks its tokens: its policy and what shapes its step (everything but the
    inputs and the key). Rows whose plans agree but for the seed share one compiled call."""

    mode: Mode  # the policy: entropix, normal or greedy (fork rows decode greedily)
    seed: int
    cfg: SamplerConfig
    width: int  # candidates kept for the draw and the reported alternatives
    n_max: int  # draws per step (best-of-n in entropix's adaptive state)
    n_top: int  # alternatives packed per step
    clarify_id: int | None  # the pause token's id, None when the config has none


def sample_rows(
    logits: mx.array,
    metrics: mx.array,
    log_norm: mx.array,
    can_clarify: mx.array,
    plans: Sequence[RowPlan],
    index: int | Sequence[int],
    compile_steps: bool = True,
    group: mx.distributed.Group | None = None,
) -> Step:
    """Each row decides and draws as it would alone, under its own key ``step_key(seed,
    index)`` (``index``: the step, or each row's step); a run of rows with the same plan but for
    the seed is one call. The one place a step's rows are sampled (engine and batch decoder)."""
    steps = [index] * len(plans) if isinstance(index, int) else list(index)
    if logits.shape[0] != len(plans):  # a prompt's one row, the first step of each of its rows
        logits, metrics, log_norm = (mx.broadcast_to(a, (len(plans), *a.shape[1:]))
                                     for a in (logits, metrics, log_norm))  # fmt: skip
    parts, start = [], 0
    runs = itertools.groupby(zip(plans, steps, strict=True), lambda r: r[0]._replace(seed=0))
    for _, run in runs:  # rows whose plans agree but for the seed: one call
        keys = [step_key(p.seed, i) for p, i in run]
        rows = slice(start, start + len(keys))
        key = keys[0] if len(keys) == 1 else mx.stack(keys)
        parts.append(sample_step(logits[rows], metrics[rows], log_norm[rows], can_clarify[rows],
                                 key, plans[start], compile_steps, group))  # fmt: skip
        start = rows.stop
    if len(parts) == 1:
        return parts[0]
    # Rows with fewer alternatives (n_top) than others: zeros after their own layout.
    width = max(p.packed.shape[1] for p in parts)
    parts = [p._replace(packed=mx.pad(p.packed, [(0, 0), (0, width - p.packed.shape[1])]))
             for p in parts]  # fmt: skip
    return Step(*(mx.concatenate(list(p), axis=0) for p in zip(*parts, strict=True)))


def sample_step(
    logits: mx.array,
    metrics: mx.array,
    log_norm: mx.array,
    can_clarify: mx.array,
    key: mx.array,
    plan: RowPlan,
    compile_steps: bool = True,
    group: mx.distributed.Group | None = None,
) -> Step:
    """Decision, draw and packing of one step of rows that share ``plan`` (but for the seed:
    ``key`` is one key, or one per row); the config enters as an array (no recompile).

    Under ``mlx.launch`` (``group``) every rank takes rank 0's step: ranks hold identical
    logits on identical machines, but replicated layers on different chips can differ in the
    last bit, and one different draw would split the ranks' caches and stop conditions. One
    broadcast of the packed values (tokens and decisions in them) per step."""
    static = {k: getattr(plan, k) for k in ("mode", "width", "n_max", "n_top", "clarify_id")}
    args = (logits, metrics, log_norm, can_clarify, key, config_array(plan.cfg))
    step = Step(*compiled(plan_step, compile_steps, **static)(*args))
    if group is None:
        return step
    packed = from_rank0(step.packed, group)  # columns: token, state, action, ... (stream.py)
    return Step(packed[:, 0].astype(mx.int32), can_clarify & (packed[:, 2] != CLARIFY), packed)


def plan_step(
    logits: mx.array,
    metrics: mx.array,
    log_norm: mx.array,
    can_clarify: mx.array,
    key: mx.array,
    cfg_values: mx.array,
    *,
    mode: Mode,
    width: int,
    n_max: int,
    n_top: int,
    clarify_id: int | None,
) -> tuple[mx.array, mx.array, mx.array]:
    cfg: Any = ConfigArrays(cfg_values)
    plan = decide(metrics, cfg, mode, can_clarify)
    if mode == "greedy":  # no filters to apply: skip their pass over the vocabulary
        ids, cand_logits = top_candidates(logits, width)
        token = ids[:, 0]
    else:
        token, ids, cand_logits = sample(logits, plan, key, width, n_max)
    if clarify_id is not None:
        token = mx.where(plan.action == CLARIFY, clarify_id, token)
    logprob = mx.take_along_axis(logits, token[:, None], axis=-1)[:, 0] - log_norm
    columns = [token, plan.state, plan.action, plan.temperature, plan.top_p, plan.top_k,
               plan.min_p, plan.n_samples, logprob]  # fmt: skip
    head = mx.stack([c.astype(mx.float32) for c in columns], axis=-1)
    top_ids = ids[:, :n_top].astype(mx.float32)  # exact: ids < 2**24
    top_lps = cand_logits[:, :n_top] - log_norm[:, None]
    packed = mx.concatenate([head, metrics, top_ids, top_lps], axis=-1)
    return token, can_clarify & (plan.action != CLARIFY), packed
