"""A request: before the engine runs it, its prompt checked into token ids, its mode checked,
and one plan per row (policy, config, candidate width, draws, seed); in the shared batch
(``batch.py``), its state (``BatchRequest``)."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import Mode, SamplerConfig
from ..errors import InvalidRequestError, PromptTooLongError
from ..events import DoneEvent, ErrorEvent, ForkEvent, TokenEvent
from ..uncertainty.sampler import candidate_width
from ..uncertainty.step import RowPlan, Step

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from ..io.load import LoadedModel
    from .branches import SlotRows
    from .stream import RowStream

__all__ = ["MODES", "PREFILL_CHUNK", "BatchRequest", "Prompt", "check_modes",
           "check_unicode", "prepare_prompt", "row_plan"]  # fmt: skip
Event = TokenEvent | ForkEvent | DoneEvent | ErrorEvent
Prompt = str | list[dict[str, Any]] | list[int]
# A long prompt is prefilled in chunks of this many tokens, which bounds the prefill's peak
# memory (one chunk's attention scores); a chunk runs a layer at a time, so a cancel or a time
# limit lands within one layer of one chunk: 1.2 s on average at 7,900 tokens on the 2-core
# CPU, twice that for 256 tokens (benchmarks/README.md, "Serving a long prompt").
PREFILL_CHUNK = 128
MODES: tuple[Mode, ...] = ("entropix", "normal", "greedy", "fork")
MAX_TOP_LOGPROBS = 20
ROLES = ("system", "user", "assistant")


def check_unicode(text: str) -> None:
    """A clear error for a prompt text the tokenizer cannot take: a lone surrogate (JSON's
    ``"\\ud800"`` escape decodes to one) makes Hugging Face's tokenizer raise a TypeError."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidRequestError(
            f"the prompt is not valid Unicode: a lone surrogate U+{ord(text[err.start]):04X} "
            f"at character {err.start}"
        ) from None


def prepare_prompt(
    lm: LoadedModel, prompt: Prompt, system: str | None = None, max_tokens: int = 256
) -> list[int]:
    """The prompt's token ids, or a clear error before anything is generated.

    ``str``: one user message in the model's chat template (with ``system`` if given);
    ``list[dict]``: chat messages; ``list[int]``: ids as they are.
    """
    if max_tokens < 1:
        raise InvalidRequestError(f"max_tokens must be at least 1 (got {max_tokens})")
    if isinstance(prompt, str):  # one user message
        prompt = [{"role": "user", "content": prompt}]
    if prompt and all(isinstance(m, dict) for m in prompt):
        messages = [dict(m) for m in prompt]  # type: ignore[arg-type]
        if not all(m.get("role") in ROLES and isinstance(m.get("content"), str) for m in messages):
            raise InvalidRequestError(
                "each message needs a role (system, user or assistant) and a text content"
            )
        if not any(m["content"].strip() for m in messages):
            raise InvalidRequestError("the prompt is empty")
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
        for m in messages:
            check_unicode(m["content"])
        ids = lm.tokenizer.apply_chat_template(messages)
        if (top := max(ids, default=0)) >= lm.info.vocab_size:  # the model would read past its
            raise InvalidRequestError(  # embedding (a segfault on the CPU): a mismatched pair
                f"the tokenizer gave token id {top}, outside the model's vocabulary of "
                f"{lm.info.vocab_size}: this tokenizer does not belong to this model"
            )
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


def check_modes(modes: Sequence[Mode], top_logprobs: int) -> None:
    """A clear error for no mode, an unknown one, a fork row beside others or a
    ``top_logprobs`` out of range."""
    if not modes:
        raise InvalidRequestError("no mode to run")
    if unknown := [m for m in modes if m not in MODES]:
        raise InvalidRequestError(f"unknown mode {unknown[0]!r} (choose from {', '.join(MODES)})")
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(f"top_logprobs must lie in [0, {MAX_TOP_LOGPROBS}]")
    if "fork" in modes and len(modes) > 1:
        raise InvalidRequestError("fork mode runs alone (its branches are the batch)")


def row_plan(
    cfg: SamplerConfig, mode: Mode, seed: int, vocab: int, n_top: int, clarify_id: int | None
) -> RowPlan:
    """A row's plan: its policy, the candidates it keeps (enough for its filters and for the
    ``n_top`` alternatives reported) and its draws per step."""
    policy_: Mode = "greedy" if mode == "fork" else mode  # fork: greedy between forks
    width = max(candidate_width(cfg, policy_, vocab), n_top, 1)
    n_max = cfg.n_adaptive_samples if mode == "entropix" else 1
    return RowPlan(policy_, seed, cfg, width, n_max, n_top, clarify_id)


@dataclass(eq=False)
class BatchRequest:
    """One request in the decoder: one prompt, one or more rows (mode, seed) from its prefill.

    ``events`` fills with ``(row, event)`` as the decoder makes them; ``finished`` turns true
    once every row has its ``DoneEvent`` there."""

    ids: list[int]
    rows: list[tuple[Mode, int]]
    cfg: SamplerConfig
    budget: int
    should_stop: Callable[[], bool]
    streams: list[RowStream]
    events: deque[tuple[int, Event]] = field(default_factory=deque)
    finished: bool = False
    closed: set[int] = field(default_factory=set)  # rows whose DoneEvent is out
    shown: int = 1  # the first rows a client sees (the rest: hidden sampled rows)
    # decoder state
    waiting: bool = False  # a short prompt not yet in a prefill
    slots: list[int] = field(default_factory=list)  # its rows in the shared cache
    remaining: int = 0  # prompt tokens not prefilled yet (shortest first)
    index: int = 0  # step of ``current``
    emitted: int = -1  # the last step whose events are out
    current: Step | None = None
    cached: int = 0  # prompt tokens taken from the prefix cache
    generated: defaultdict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    t_prefill: float = 0.0
    # a row's values were not finite after its end (it idles along while the others run): its
    # slot holds NaN keys, zeroed when freed (``SharedCache.free``)
    dirty: bool = False
    plans: list[RowPlan] = field(default_factory=list)  # each row's (``request.row_plan``)
    # mode fork: choice options, a running fork's rows, the plan and step at it, forks, work
    options: dict[str, str] | None = None
    branches: SlotRows | None = None
    at_fork: tuple[RowPlan, Step] | None = None
    forks: int = 0
    computed: int = 0
