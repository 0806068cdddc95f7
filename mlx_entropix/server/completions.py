"""OpenAI's legacy ``POST /v1/completions``: raw text (or token ids) in, text out, streaming or not.

The prompt is the client's whole text: no chat template, tokenized as mlx-lm's, llama.cpp's and
vLLM's servers do (the tokenizer's BOS, special-token strings as the tokens they name: there is
no template turn to forge; chat contents are never parsed so). ``logprobs: k`` returns the
legacy columns (``TextChunks.legacy_logprobs``); the extensions and ``n`` work as in chat.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request

from ..engine.request import check_unicode
from ..errors import InvalidRequestError
from ..events import DoneEvent, TokenEvent
from .deps import engine_of, resolve_max_tokens, settings_of, streamed
from .openai_api import (
    FINISH,
    Tokens,
    entropix_chunk,
    respond,
    response_head,
    start_job,
    usage,
    with_detail,
)
from .schemas import COMPLETION_MAX_TOKENS, CompletionRequest

router = APIRouter(prefix="/v1", tags=["openai"])


class TextChunks:
    """The ``text_completion`` objects of one completion (streamed chunks or the whole)."""

    def __init__(self, model: str, mode: str, logprobs: bool, metrics: bool):
        self.head = response_head("cmpl", "text_completion", model, mode)
        self.logprobs, self.metrics = logprobs, metrics
        self.offsets: defaultdict[int, int] = defaultdict(int)  # per choice: its text's length

    def legacy_logprobs(self, row: int, entries: Tokens) -> dict[str, list]:
        """The legacy ``logprobs`` columns of choice ``row``'s next tokens."""
        out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        for event, entry in entries:
            assert entry is not None  # logprobs were asked for
            out["tokens"].append(entry["token"])
            out["token_logprobs"].append(entry["logprob"])
            out["top_logprobs"].append({t["token"]: t["logprob"] for t in entry["top_logprobs"]})
            start = self.offsets[row]  # the text sent before this token
            self.offsets[row] += len(event.text)
            # A token whose text the detokenizer holds back (a space before a word, part of a
            # character) comes out with the next one's: that one starts after it.
            if event.text:
                start = max(start, self.offsets[row] - len(entry["token"]))
            out["text_offset"].append(start)
        return out

    def choice(self, row: int, text: str, tokens: Tokens, done: DoneEvent | None) -> dict:
        return {
            "text": text,
            "index": row,
            "logprobs": self.legacy_logprobs(row, tokens) if self.logprobs else None,
            "finish_reason": FINISH[done.finish_reason] if done is not None else None,
        }

    def chunk(self, row: int, held: tuple[TokenEvent, Any] | None, done: DoneEvent | None) -> dict:
        """One streamed chunk: choice ``row``'s token (None: no token, its end only)."""
        tokens = [held] if held is not None else []
        text = held[0].text if held is not None else ""
        body: dict[str, Any] = {**self.head, "choices": [self.choice(row, text, tokens, done)]}
        if self.metrics:  # as in chat: one token's fields per chunk
            body["entropix"] = entropix_chunk(held[0] if held is not None else None, done)
        return body

    def whole(self, choices: list[tuple[Tokens, DoneEvent]]) -> dict[str, Any]:
        """The non-streaming object (``choices`` from ``by_choice``)."""
        out = [self.choice(i, done.text, tokens, done) for i, (tokens, done) in enumerate(choices)]
        body = with_detail({**self.head, "choices": out}, choices, self.metrics)
        return {**body, "usage": usage([done for _, done in choices])}


@router.post(
    "/completions",
    responses=streamed(
        "A text_completion, or with stream=true an SSE stream of "
        "text_completion chunks ending with `data: [DONE]`."
    ),
)
async def completions(body: CompletionRequest, request: Request) -> Any:
    engine, mode = engine_of(request), body.mode()
    max_tokens = resolve_max_tokens(body.max_tokens, settings_of(request), COMPLETION_MAX_TOKENS)
    prompt = body.text_or_ids()
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidRequestError("the prompt is empty")
        check_unicode(prompt)
        prompt = engine.checker.tokenizer.encode(prompt, add_special_tokens=True)
    stream = start_job(request, body, prompt, mode, max_tokens, body.logprobs, fmt="raw")
    build = TextChunks(engine.model_id, mode, body.logprobs is not None, body.wants_extension())
    return await respond(request, body, stream, build)
