"""A request before the engine runs it: its prompt checked into token ids, its mode checked,
and one plan per row (policy, config, candidate width, draws, seed). Shared by the shared
batch (``batch.py``) and the loop for what it cannot serve (``generate._run``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import Mode, SamplerConfig
from ..errors import InvalidRequestError, PromptTooLongError
from ..uncertainty.sampler import candidate_width
from ..uncertainty.step import RowPlan

if TYPE_CHECKING:  # the core never imports the loaders; they hand it a LoadedModel
    from ..io.load import LoadedModel

__all__ = ["MODES", "PREFILL_CHUNK", "Prompt", "check_mode", "clarify_token", "prepare_prompt",
           "row_plan"]  # fmt: skip
Prompt = str | list[dict[str, Any]] | list[int]
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


def check_mode(mode: Mode, top_logprobs: int) -> None:
    """A clear error for an unknown mode or a ``top_logprobs`` out of range."""
    if mode not in MODES:
        raise InvalidRequestError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    if not 0 <= top_logprobs <= MAX_TOP_LOGPROBS:
        raise InvalidRequestError(f"top_logprobs must lie in [0, {MAX_TOP_LOGPROBS}]")


def row_plan(
    cfg: SamplerConfig, mode: Mode, seed: int, vocab: int, n_top: int, clarify_id: int | None
) -> RowPlan:
    """A row's plan: its policy, the candidates it keeps (enough for its filters and for the
    ``n_top`` alternatives reported) and its draws per step."""
    policy_: Mode = "greedy" if mode == "fork" else mode  # fork: greedy between forks
    width = max(candidate_width(cfg, policy_, vocab), n_top, 1)
    n_max = cfg.n_adaptive_samples if mode == "entropix" else 1
    return RowPlan(policy_, seed, cfg, width, n_max, n_top, clarify_id)


def clarify_token(lm: LoadedModel, cfg: SamplerConfig) -> int | None:
    """The clarifying pause's token id under ``cfg`` (None: the config has none)."""
    return lm.tokenizer.token_id(cfg.clarifying_token) if cfg.clarifying_token else None
