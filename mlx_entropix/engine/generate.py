"""The generation engine: one typed event per token, then a summary.

Per step, all on the device: the forward pass (logits + last-layer attention scores), the six
metrics, the sampler's decision and the draw (``sampler.py``). The sampled token feeds the next
forward pass while still on the device, so step n+1 is queued (``mx.async_eval``) before step
n's results are read in one host sync, turned into an event and handed to the caller: the
device keeps working while the CLI prints or the server streams (mlx-lm's loop does the same).

The same loop serves every mode (entropix, normal, greedy, fork): comparisons share everything
but the policy, and metrics are reported in all of them. It runs B rows at once from one
prefill (``generate_batch``: the prompt's KV cache is copied to B rows on the device), each row
with its own mode, seed and stream of events, and still one host sync per step for all rows.
Fork mode (``fork.py``) decodes its branches as such a batch.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import mlx.core as mx

from ..answers import parse_options
from ..config import Mode, SamplerConfig
from ..errors import InvalidRequestError, PromptTooLongError
from ..events import DoneEvent, ForkEvent, TokenEvent
from ..models.llama import Cancelled, checked_steps
from ..models.protocol import LayerSteps
from ..uncertainty.sampler import candidate_width, step_key
from ..uncertainty.step import RowPlan, Step, observe, sample_rows, sample_step
from .confidence import shipped_model
from .fork import explore, fork_due, select_row, tile_cache
from .stream import METRICS, STATE, TOKEN, RowStream

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from ..io.load import LoadedModel

__all__ = ["MODES", "generate", "generate_batch", "generate_rows", "prepare_prompt"]
Prompt = str | list[dict[str, Any]] | list[int]
Event = TokenEvent | ForkEvent | DoneEvent
# A long prompt is prefilled in chunks of this many tokens, which bounds the prefill's peak
# memory (one chunk's attention scores). With ``should_stop`` the model evaluates a chunk layer
# by layer and checks it between layers, so a cancel or a time limit lands within one layer of
# one chunk (1/30 of a chunk for the embedded model). Measured on the 2-core CPU while shared
# (load average 9-13): one layer of a 128-token chunk takes 0.07 s at the start of a prompt and
# 1.2 s on average (2.8 s at most) at 7,900 tokens, where attention over the context dominates;
# a 256-token chunk took twice that (benchmarks/README.md, "Serving a long prompt").
PREFILL_CHUNK = 128
MODES: tuple[Mode, ...] = ("entropix", "normal", "greedy", "fork")
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


def _forward(
    lm: LoadedModel,
    tokens: list[int] | mx.array,
    cache: list,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[mx.array, ...] | None:
    """Run ``tokens`` through the model, lazily: last logits (B, V), metrics (B, 6) and the
    log of the softmax normaliser (B,). A list is the (one-row) prompt; an array is one decode
    step, a token per row, still on the device. A prefill with ``should_stop`` checks it
    between layers and returns None when it turned true."""
    if isinstance(tokens, mx.array):
        chunks, should_stop = [tokens.reshape(-1, 1)], None
    else:
        chunks = _chunks(tokens)
    try:
        for chunk in chunks[:-1]:
            lm.model(chunk, cache, should_stop=should_stop)
            mx.eval([c.state for c in cache])
        logits, scores = lm.model(chunks[-1], cache, last_only=True, should_stop=should_stop)
    except Cancelled:
        return None
    return observe(logits, scores, _compile_steps(lm), lm.model.head_group)


def _prefill_in_steps(
    lm: LoadedModel, ids: list[int], cache: list, should_stop: Callable[[], bool] | None
) -> Generator[None, None, tuple[mx.array, ...] | None]:
    """``_forward`` of a prompt that yields between layers (between chunks for a model without
    ``layer_steps``), each evaluated before the yield: the caller can serve others meanwhile
    (the server's worker, while a long fork prompt prefills). The same operations, so the same
    results; None when ``should_stop`` turned true."""
    chunks = _chunks(ids)
    try:
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if isinstance(lm.model, LayerSteps):
                steps = lm.model.layer_steps(chunk, cache, last_only=last, evaluate=True)
                logits, scores = yield from checked_steps(steps, should_stop)
            else:
                logits, scores = lm.model(chunk, cache, last_only=last, should_stop=should_stop)
                mx.eval([c.state for c in cache])
                yield
    except Cancelled:
        return None
    return observe(logits, scores, _compile_steps(lm), lm.model.head_group)


def _chunks(ids: list[int]) -> list[mx.array]:
    return [mx.array(ids[i : i + PREFILL_CHUNK])[None] for i in range(0, len(ids), PREFILL_CHUNK)]


def _compile_steps(lm: LoadedModel) -> bool:
    """Whether this model's per-token functions run compiled (``runtime.device``'s choice)."""
    return getattr(lm, "compile_steps", True)


def check_mode(mode: Mode, top_logprobs: int) -> None:
    """A clear error for an unknown mode or a ``top_logprobs`` out of range."""
    if mode not in MODES:
        raise InvalidRequestError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(f"top_logprobs must lie in [0, {MAX_TOP_LOGPROBS}]")


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
) -> Iterator[Event]:
    """Yield a ``TokenEvent`` per generated token (and a ``ForkEvent`` before the tokens of
    each explored fork, mode fork), then one ``DoneEvent``.

    Raises ``InvalidRequestError`` / ``PromptTooLongError`` before the first event.
    """
    return generate_batch(
        lm, prompt, modes=[mode], seeds=[seed], config=config, max_tokens=max_tokens,
        stop=stop, system=system, top_logprobs=top_logprobs, should_stop=should_stop,
    )  # fmt: skip


def generate_batch(
    lm: LoadedModel, prompt: Prompt, *, modes: Sequence[Mode], **options: Any
) -> Iterator[Event]:
    """Several rows decoded as one batch from one prefill: row r runs ``modes[r]`` with
    ``seeds[r]`` and gives exactly the events of ``generate`` with that mode and seed. Events
    of a step come in row order (each carries its ``mode``); each row ends with its own
    ``DoneEvent``. A missing seed is drawn once and shared by every row (the compare view).
    Fork mode runs alone (its branches are the batch). Options: those of ``generate_rows``.
    """
    return (event for _, event in generate_rows(lm, prompt, modes=modes, **options))


def generate_rows(
    lm: LoadedModel,
    prompt: Prompt,
    *,
    modes: Sequence[Mode],
    seeds: Sequence[int | None] | None = None,
    config: SamplerConfig | None = None,
    max_tokens: int = 256,
    stop: Sequence[str] = (),
    system: str | None = None,
    top_logprobs: int = 5,
    should_stop: Callable[[], bool] | None = None,
    idle: bool = False,
    fmt: str | None = None,
) -> Iterator[tuple[int, Event] | None]:
    """``generate_batch``'s events as ``(r, event)``: r is the row the event belongs to, which
    tells apart rows of the same mode (several choices of one request, each its own seed).
    ``idle``: the prompt is prefilled a layer at a time with a ``None`` item after each, so a
    scheduler can run other work between them (the tokens are the same). ``fmt``: the
    prompt's format for the answer confidence, "chat" or "raw" (default: raw for token ids).
    Raises ``InvalidRequestError`` / ``PromptTooLongError`` before the first event."""
    if not modes:
        raise InvalidRequestError("no mode to run")
    for mode in modes:
        check_mode(mode, top_logprobs)
    if "fork" in modes and len(modes) > 1:
        raise InvalidRequestError("fork mode runs alone (its branches are the batch)")
    ids = prepare_prompt(lm, prompt, system, max_tokens)
    cfg = config or lm.default_config
    shared = secrets.randbelow(2**31)
    seeds = [shared if s is None else int(s) for s in (seeds or [None] * len(modes))]
    if len(seeds) != len(modes):
        raise InvalidRequestError("one seed per mode")
    clarify_id = clarify_token(lm, cfg)
    budget = min(max_tokens, lm.info.context_length - len(ids))
    rows = [_Row(m, s) for m, s in zip(modes, seeds, strict=True)]
    if fmt is None:
        fmt = "raw" if all(isinstance(t, int) for t in prompt) and prompt else "chat"
    return _run(
        lm, ids, rows, cfg, budget, stop, top_logprobs, should_stop, clarify_id, idle, fmt
    )  # fmt: skip


def policy(mode: Mode) -> Mode:
    """How a row picks its tokens: fork mode is greedy between forks."""
    return "greedy" if mode == "fork" else mode


def row_plan(
    cfg: SamplerConfig, mode: Mode, seed: int, vocab: int, n_top: int, clarify_id: int | None
) -> RowPlan:
    """A row's plan: its policy, the candidates it keeps (enough for its filters and for the
    ``n_top`` alternatives reported) and its draws per step."""
    policy_ = policy(mode)
    width = max(candidate_width(cfg, policy_, vocab), n_top, 1)
    n_max = cfg.n_adaptive_samples if mode == "entropix" else 1
    return RowPlan(policy_, seed, cfg, width, n_max, n_top, clarify_id)


def clarify_token(lm: LoadedModel, cfg: SamplerConfig) -> int | None:
    """The clarifying pause's token id under ``cfg`` (None: the config has none)."""
    return lm.tokenizer.token_id(cfg.clarifying_token) if cfg.clarifying_token else None


class _Row(NamedTuple):
    mode: Mode
    seed: int


def _run(
    lm: LoadedModel,
    ids: list[int],
    rows: list[_Row],
    cfg: SamplerConfig,
    budget: int,
    stop: Sequence[str],
    top_logprobs: int,
    should_stop: Callable[[], bool] | None,
    clarify_id: int | None,
    idle: bool = False,
    fmt: str = "chat",
) -> Iterator[tuple[int, Event] | None]:
    fork = rows[0].mode == "fork"
    # At least two candidates: the answer confidence uses the first token's margin p1 - p2.
    widths = (cfg.fork_branches, cfg.fork_answer_branches + 1) if fork else ()  # + own token
    n_top = max(top_logprobs, 2, *widths)
    # The choice reader names an option by its text too: the options are the prompt's.
    choice = fork and cfg.fork_answer_kind == "choice"
    options = parse_options(lm.tokenizer.decode(ids)) if choice else None
    vocab = lm.info.vocab_size
    t_start = time.perf_counter()
    t_prefill = t_start
    conf = shipped_model(lm.info.name)
    streams = [
        RowStream(lm.tokenizer, r.mode, stop, top_logprobs, n_top, t_start, conf, fmt) for r in rows
    ]
    plans = [row_plan(cfg, r.mode, r.seed, vocab, n_top, clarify_id) for r in rows]

    def step(forward: tuple[mx.array, ...], can: mx.array, index: int) -> Step:
        """Each row decides and draws under its own key, as it would alone."""
        return sample_rows(*forward, can, plans, index, _compile_steps(lm), lm.model.group)

    def branch_step(tokens: mx.array, cache: list) -> Step:
        """All branches of a fork at once: greedy needs no key."""
        fwd = _forward(lm, tokens, cache)
        can = mx.zeros(tokens.shape, dtype=mx.bool_)
        greedy = RowPlan("greedy", 0, cfg, n_top, 1, n_top, None)
        return sample_step(*fwd, can, step_key(0, 0), greedy, _compile_steps(lm), lm.model.group)

    def queue(index: int) -> Step | None:
        """Step ``index`` from the current token, queued on the device; None past the budget."""
        if index >= budget:
            return None
        queued = step(_forward(lm, current.token, cache), current.can_clarify, index)
        mx.async_eval(queued)
        return queued

    cache = lm.model.make_cache()
    if idle:
        forward = yield from _prefill_in_steps(lm, ids, cache, should_stop)
    else:
        forward = _forward(lm, ids, cache, should_stop)
    if forward is None:  # cancelled (or out of time) during the prefill: no token at all
        for s in streams:
            s.finish, s.finished = "cancelled", True
        budget = 0
    elif len(rows) > 1:  # one prefill; every row starts from a copy of its cache
        tile_cache(cache, len(rows))
    if forward is not None:
        current = step(forward, mx.array([clarify_id is not None] * len(rows)), 0)
        mx.async_eval(current)
    index, forks, computed = 0, 0, 0
    closed: set[int] = set()

    def finish_row(r: int) -> Iterator[tuple[int, Event]]:
        closed.add(r)
        yield from ((r, e) for e in streams[r].close())
        extra = {"tokens_computed": computed, "forks": forks, "t_decode": t_prefill} if fork else {}
        yield r, streams[r].done(len(ids), t_prefill, rows[r].seed, **extra)

    while index < budget:
        if should_stop is not None and should_stop():
            for s in streams:
                if not s.finished:
                    s.finish, s.finished = "cancelled", True
            break
        # Step n+1 is queued on the device before step n is read, except after the first
        # token: MLX's async_eval returns only once all but ~100 ops of the graphs before it
        # have run (10 tasks in flight at most), so the first token would wait for step 1.
        following = queue(index + 1) if index > 0 else None
        values = current.packed.tolist()  # the one host sync of this step, all rows
        computed += len(rows)
        if index == 0:
            t_prefill = time.perf_counter()
        trigger = (
            fork_due(cfg, index, int(values[0][STATE]), values[0][METRICS][0]) if fork else None
        )
        if trigger is not None and forks < cfg.fork_max_forks:
            if following is not None:  # it fed the greedy token: take it back out
                for c in cache:
                    c.trim(1)
            found = explore(
                lm.tokenizer, branch_step, cache, values[0], trigger, cfg, n_top,
                budget - index, stop, should_stop, options,
            )  # fmt: skip
            forks += 1
            computed += found.event.tokens_computed + (following is not None)
            event = found.event.model_copy(update={"index": streams[0].n})
            yield from ((0, e) for e in streams[0].add_fork(event))
            for vals in found.rows:
                yield from ((0, e) for e in streams[0].push(vals))
                if streams[0].finished:
                    break
            if found.ended and not streams[0].finished:
                streams[0].finish, streams[0].finished = "stop", True
            index += len(found.rows)
            if streams[0].finished or index >= budget:
                break
            cache = select_row(cache, found.row, found.offset)
            last = mx.array([int(found.rows[-1][TOKEN])])
            current = step(_forward(lm, last, cache), current.can_clarify[:1], index)
            mx.async_eval(current)
            continue
        for r, (s, vals) in enumerate(zip(streams, values, strict=True)):
            if not s.finished:
                yield from ((r, e) for e in s.push(vals))
                if s.finished:  # this row is done; the others go on (its row idles along)
                    yield from finish_row(r)
        if index == 0 and not all(s.finished for s in streams):
            following = queue(1)  # after the first token's events were handed out
        if all(s.finished for s in streams) or following is None:
            break
        index += 1
        current = following

    for r in range(len(rows)):
        if r not in closed:
            yield from finish_row(r)
