"""The generation engine: one typed event per token, then a summary.

Per step, all on the device: the forward pass (logits + last-layer attention scores), the six
metrics, the sampler's decision and the draw (``sampler.py``). The sampled token feeds the next
forward pass while still on the device, so step n+1 is queued (``mx.async_eval``) before step
n's results are read in one host sync, turned into an event and handed to the caller: the
device keeps working while the CLI prints or the server streams (mlx-lm's loop does the same).

The same loop serves every mode (entropix, normal, greedy): comparisons share everything but
the policy, and metrics are reported in all of them.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import mlx.core as mx

from .compiled import ConfigArrays, compiled, config_array
from .config import Mode, SamplerConfig
from .errors import InvalidRequestError, PromptTooLongError
from .events import (
    ACTIONS,
    METRIC_NAMES,
    STATES,
    DoneEvent,
    FinishReason,
    Metrics,
    SamplingParams,
    TokenEvent,
    TopLogprob,
)
from .metrics import attention_metrics, logits_metrics
from .sampler import CLARIFY, candidate_width, decide, sample, step_key, top_candidates

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from .io.load import LoadedModel

Prompt = str | list[dict[str, Any]] | list[int]
PREFILL_CHUNK = 512  # bounds the prefill's peak memory on long prompts
MODES: tuple[Mode, ...] = ("entropix", "normal", "greedy")
MAX_TOP_LOGPROBS = 20


def prepare_prompt(
    lm: LoadedModel, prompt: Prompt, system: str | None = None, max_tokens: int = 256
) -> list[int]:
    """The prompt's token ids, or a clear error before anything is generated.

    ``str``: one user message in the model's chat template (with ``system`` if given);
    ``list[dict]``: chat messages; ``list[int]``: ids as they are.
    """
    if max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be at least 1 (got {max_tokens})")
    tok = lm.tokenizer
    if isinstance(prompt, str):
        if not prompt.strip():
            raise InvalidRequestError("the prompt is empty")
        messages = [{"role": "user", "content": prompt}]
        if system:
            messages.insert(0, {"role": "system", "content": system})
        ids = tok.apply_chat_template(messages)
    elif prompt and all(isinstance(m, dict) for m in prompt):
        messages = [dict(m) for m in prompt]  # type: ignore[arg-type]
        for m in messages:
            if m.get("role") not in ("system", "user", "assistant") or not isinstance(
                m.get("content"), str
            ):
                raise InvalidRequestError(
                    "each message needs a role (system, user or assistant) and a text content"
                )
        if not any(m["content"].strip() for m in messages):
            raise InvalidRequestError("the prompt is empty")
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        ids = tok.apply_chat_template(messages)
    elif prompt and all(isinstance(t, int) for t in prompt):
        ids = list(prompt)  # type: ignore[arg-type]
        if min(ids) < 0 or max(ids) >= lm.info.vocab_size:
            raise InvalidRequestError(f"token ids must lie in [0, {lm.info.vocab_size})")
    else:
        raise InvalidRequestError("the prompt is empty or of an unknown type")
    limit = lm.info.context_length
    if len(ids) + 1 > limit:
        raise PromptTooLongError(
            f"the prompt is {len(ids)} tokens; the model's context is {limit} tokens "
            "(prompt plus at least one generated token)"
        )
    return ids


def _forward(lm: LoadedModel, tokens: list[int] | mx.array, cache: list) -> tuple[mx.array, ...]:
    """Run ``tokens`` through the model, lazily: last logits (1, V), metrics (1, 6) and the
    log of the softmax normaliser (1,)."""
    if isinstance(tokens, mx.array):  # one decode step on a token still on the device
        chunks = [tokens.reshape(1)]
    else:
        chunks = [
            mx.array(tokens[i : i + PREFILL_CHUNK]) for i in range(0, len(tokens), PREFILL_CHUNK)
        ]
    for chunk in chunks[:-1]:
        lm.model(chunk[None], cache)
        mx.eval([c.state for c in cache])
    logits, scores = lm.model(chunks[-1][None], cache, last_only=True)
    last = logits[:, -1].astype(mx.float32)
    on = _compile_steps(lm)
    entropy, varentropy, log_norm = compiled(logits_metrics, on)(last)
    # Shapeless: the scores grow by one key per step, which must not retrace the graph.
    attention = compiled(attention_metrics, on, shapeless=True)(scores)
    return last, mx.stack([entropy, varentropy, *attention], axis=-1), log_norm


def _compile_steps(lm: LoadedModel) -> bool:
    """Whether this model's per-token functions run compiled (``runtime.device``'s choice)."""
    return getattr(lm, "compile_steps", True)


def params_of(values: list[float]) -> SamplingParams:
    """The event's ``SamplingParams`` from the packed (temperature, top_p, top_k, min_p, n)."""
    temp, top_p, top_k, min_p, n = values
    return SamplingParams(
        temperature=round(temp, 6),
        top_p=round(top_p, 6),
        top_k=int(top_k),
        min_p=round(min_p, 6),
        n_samples=int(n),
    )


class _StopMatcher:
    """Holds back text that may be the start of a stop string; finds the first full match."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]

    def find(self, text: str, new: int = 0) -> int:
        """Index where the first stop string starts, or -1. ``text[:new]`` was searched
        before, so only a match that ends after it is new: scan the tail only."""
        start = max(0, new - max((len(s) for s in self.stops), default=1) + 1)
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits) if hits else -1

    def safe_end(self, text: str) -> int:
        """How much of ``text`` can be released: none of its tail may start a stop string."""
        end = len(text)
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:n]):
                    end = min(end, len(text) - n)
                    break
        return end


def generate(
    lm: LoadedModel,
    prompt: Prompt,
    *,
    mode: Mode = "entropix",
    config: SamplerConfig | None = None,
    max_tokens: int = 256,
    seed: int | None = None,
    stop: Sequence[str] = (),
    system: str | None = None,
    top_logprobs: int = 5,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[TokenEvent | DoneEvent]:
    """Yield a ``TokenEvent`` per generated token, then one ``DoneEvent``.

    Raises ``InvalidRequestError`` / ``PromptTooLongError`` before the first event.
    """
    if mode not in MODES:
        raise InvalidRequestError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(f"top_logprobs must lie in [0, {MAX_TOP_LOGPROBS}]")
    ids = prepare_prompt(lm, prompt, system, max_tokens)
    cfg = config or lm.default_config
    seed = secrets.randbelow(2**31) if seed is None else int(seed)
    tok = lm.tokenizer
    clarify_id = tok.token_id(cfg.clarifying_token) if cfg.clarifying_token else None
    budget = min(max_tokens, lm.info.context_length - len(ids))
    return _run(lm, ids, mode, cfg, budget, seed, stop, top_logprobs, should_stop, clarify_id)


class _Step(NamedTuple):
    """One step's results, still on the device until the host reads ``packed``."""

    token: mx.array  # (1,) int32: feeds the next forward pass without a host round trip
    can_clarify: mx.array  # (1,) bool
    packed: (
        mx.array
    )  # float32: token, state, action, 5 params, logprob, 6 metrics, top ids/logprobs


def _step(
    logits: mx.array,
    metrics: mx.array,
    log_norm: mx.array,
    can_clarify: mx.array,
    key: mx.array,
    cfg: SamplerConfig,
    mode: Mode,
    width: int,
    n_max: int,
    n_top: int,
    clarify_id: int | None,
    compile_steps: bool = True,
) -> _Step:
    """Decision, draw and packing of one step; the config enters as an array (no recompile)."""
    fn = compiled(_plan_step, compile_steps, mode=mode, width=width, n_max=n_max, n_top=n_top,
                  clarify_id=clarify_id)  # fmt: skip
    return _Step(*fn(logits, metrics, log_norm, can_clarify, key, config_array(cfg)))


def _plan_step(
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
    packed = mx.concatenate(
        [
            mx.stack([c.astype(mx.float32) for c in columns], axis=-1),
            metrics,
            ids[:, :n_top].astype(mx.float32),  # exact: ids < 2**24
            cand_logits[:, :n_top] - log_norm[:, None],
        ],
        axis=-1,
    )[0]
    return token, can_clarify & (plan.action != CLARIFY), packed


def _run(
    lm: LoadedModel,
    ids: list[int],
    mode: Mode,
    cfg: SamplerConfig,
    budget: int,
    seed: int,
    stop: Sequence[str],
    top_logprobs: int,
    should_stop: Callable[[], bool] | None,
    clarify_id: int | None,
) -> Iterator[TokenEvent | DoneEvent]:
    tok = lm.tokenizer
    detok = tok.detokenizer()
    stops = _StopMatcher(stop)
    eos = tok.eos_token_ids
    states: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    text, emitted = "", 0  # full decoded text, and how much of it the events carried
    finish: FinishReason = "length"
    held: TokenEvent | None = None
    n = 0
    t_start = time.perf_counter()
    t_prefill = t_first = t_start

    vocab = lm.info.vocab_size
    width = max(candidate_width(cfg, mode, vocab), top_logprobs, 1)
    n_max = cfg.n_adaptive_samples if mode == "entropix" else 1

    def step(forward: tuple[mx.array, ...], can: mx.array, index: int) -> _Step:
        return _step(*forward, can, step_key(seed, index), cfg, mode, width, n_max,
                     top_logprobs, clarify_id, _compile_steps(lm))  # fmt: skip

    cache = lm.model.make_cache()
    current = step(_forward(lm, ids, cache), mx.array([clarify_id is not None]), 0)
    mx.async_eval(current)
    for index in range(budget):
        if should_stop is not None and should_stop():
            finish = "cancelled"
            break
        if index + 1 < budget:  # queue step n+1 on the device before reading step n
            following = step(_forward(lm, current.token, cache), current.can_clarify, index + 1)
            mx.async_eval(following)
        values = current.packed.tolist()  # the one host sync of this step
        token, state, action = (int(v) for v in values[:3])
        if index == 0:
            t_prefill = time.perf_counter()
        if token in eos:
            finish = "stop"
            break

        searched = len(text)
        text += detok.add_token(token)
        cut = stops.find(text, searched) if stops.stops else -1
        if cut >= 0:
            text, finish = text[:cut], "stop_string"
        release = len(text) if cut >= 0 else stops.safe_end(text)
        piece, emitted = text[emitted:release], max(emitted, release)
        top_ids, top_lps = values[15 : 15 + top_logprobs], values[15 + top_logprobs :]
        now = time.perf_counter()
        if n == 0:
            t_first = now
        states[STATES[state]] += 1
        actions[ACTIONS[action]] += 1
        event = TokenEvent(
            mode=mode,
            index=n,
            id=token,
            text=piece,
            state=STATES[state],
            action=ACTIONS[action],
            metrics=Metrics(**dict(zip(METRIC_NAMES, values[9:15], strict=True))),
            params=params_of(values[3:8]),
            logprob=values[8],
            top=[
                TopLogprob(id=int(i), text=tok.id_to_text(int(i)), logprob=lp)
                for i, lp in zip(top_ids, top_lps, strict=True)
            ],
            elapsed_s=now - t_start,
        )
        n += 1
        if not stops.stops:
            yield event
        else:  # one event late, so text held back for a possible stop string can join it
            if held is not None:
                yield held
            held = event
        if finish == "stop_string" or index + 1 == budget:
            break
        current = following

    if held is not None:
        held.text += text[emitted:]
        emitted = len(text)
        yield held
    text = text[:emitted]
    t_end = time.perf_counter()
    prefill_s = max(t_prefill - t_start, 1e-9)
    yield DoneEvent(
        mode=mode,
        text=text,
        finish_reason=finish,
        prompt_tokens=len(ids),
        generated_tokens=n,
        ttft_s=(t_first - t_start) if n else 0.0,
        total_s=t_end - t_start,
        prefill_tok_s=len(ids) / prefill_s,
        decode_tok_s=(n - 1) / (t_end - t_first) if n > 1 and t_end > t_first else 0.0,
        state_counts={s: states.get(s, 0) for s in STATES},
        action_counts=dict(actions),
        seed=seed,
    )
