"""OpenAI-compatible ``/v1/chat/completions`` (streaming and not) and ``/v1/models``.

Streams keep what clients rely on: ``chat.completion.chunk`` objects, ``logprobs.content``
(token, logprob, bytes, top_logprobs) in every token's chunk (mlx-lm drops them when
streaming), ``finish_reason`` on the last content chunk, an optional usage chunk, then
``data: [DONE]``.

Extensions (the official client sends them with ``extra_body={...}``): ``sampler``
(``"entropix" | "normal" | "greedy"``) or ``entropix: true`` picks the sampler, and then every
chunk carries ``entropix: {index, state, action, metrics, params}`` (the last one also
``summary``); ``sampler_config`` overrides sampler knobs. Without them: ``normal`` sampling
with the request's ``temperature``/``top_p`` (``temperature: 0`` is greedy).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from .. import __version__
from ..events import DoneEvent, ErrorEvent, TokenEvent
from .deps import (
    ERROR_RESPONSES,
    INTERNAL_ERROR,
    SEND_TIMEOUT_S,
    engine_of,
    resolve_max_tokens,
    settings_of,
)
from .engine import Engine, Event, generation_work
from .errors import error_response
from .schemas import ChatCompletionRequest, overrides_dict
from .worker import JobFailed, JobStream

router = APIRouter(prefix="/v1", tags=["openai"])

FINISH = {"stop": "stop", "stop_string": "stop", "length": "length", "cancelled": "length"}
Item = tuple[Event, dict[str, Any] | None]  # an event and its logprobs entry (if asked)


def logprob_entry(event: TokenEvent, token_bytes: Callable[[int], bytes], n_top: int) -> dict:
    """OpenAI's ``logprobs.content[i]``: the token's own bytes, not the text it adds."""

    def one(token_id: int, logprob: float) -> dict[str, Any]:
        raw = token_bytes(token_id)
        return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}

    entry = one(event.id, event.logprob)
    entry["top_logprobs"] = [one(t.id, t.logprob) for t in event.top[:n_top]]
    return entry


def entropix_token(event: TokenEvent) -> dict[str, Any]:
    return {
        "index": event.index,
        "mode": event.mode,
        "state": event.state,
        "action": event.action,
        "metrics": event.metrics.model_dump(),
        "params": event.params.model_dump(),
    }


def entropix_summary(done: DoneEvent) -> dict[str, Any]:
    return done.model_dump(include={"state_counts", "action_counts", "seed", "ttft_s"}) | {
        "decode_tok_s": done.decode_tok_s,
        "finish_reason": done.finish_reason,
    }


def usage(done: DoneEvent) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.generated_tokens,
        "total_tokens": done.prompt_tokens + done.generated_tokens,
    }


class ChunkBuilder:
    """Builds the JSON objects of one streamed completion."""

    def __init__(self, model: str, mode: str, logprobs: bool, metrics: bool, usage: bool):
        self.head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": f"mlx-entropix-{__version__}-{mode}",
        }
        self.logprobs, self.metrics, self.usage = logprobs, metrics, usage
        self.first = True

    def token(self, event: TokenEvent | None, entry: dict[str, Any] | None) -> dict[str, Any]:
        """The chunk of one token (``event`` None: an empty final chunk, zero tokens made)."""
        delta: dict[str, Any] = {"content": event.text if event is not None else ""}
        if self.first:  # the role rides on the first chunk, which thus has logprobs too
            delta = {"role": "assistant", **delta}
            self.first = False
        choice = {
            "index": 0,
            "delta": delta,
            "logprobs": {"content": [entry] if entry else []} if self.logprobs else None,
            "finish_reason": None,
        }
        chunk: dict[str, Any] = {**self.head, "choices": [choice]}
        if self.usage:
            chunk["usage"] = None
        if self.metrics:
            chunk["entropix"] = entropix_token(event) if event is not None else {}
        return chunk

    def finish(self, chunk: dict[str, Any], done: DoneEvent) -> dict[str, Any]:
        chunk["choices"][0]["finish_reason"] = FINISH[done.finish_reason]
        if self.metrics:
            chunk["entropix"]["summary"] = entropix_summary(done)
        return chunk

    def usage_chunk(self, done: DoneEvent) -> dict[str, Any]:
        return {**self.head, "choices": [], "usage": usage(done)}


def _error_object(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": None}}


def _as_error(item: Any) -> str | None:
    if isinstance(item, JobFailed):
        return INTERNAL_ERROR
    if isinstance(item, tuple) and isinstance(item[0], ErrorEvent):
        return item[0].message
    return None


async def stream_chunks(stream: JobStream, build: ChunkBuilder) -> AsyncIterator[dict[str, str]]:
    """SSE ``data:`` lines; each token's chunk waits for the next event so that the last one
    can carry ``finish_reason``."""

    def data(obj: Any) -> dict[str, str]:
        return {"data": json.dumps(obj, ensure_ascii=False, separators=(",", ":"))}

    held: dict[str, Any] | None = None
    async for item in stream:
        message = _as_error(item)
        if message is not None:
            if held is not None:
                yield data(held)
            yield data(_error_object(message))
            break
        event, entry = item
        if isinstance(event, TokenEvent):
            if held is not None:
                yield data(held)
            held = build.token(event, entry)
        elif isinstance(event, DoneEvent):
            yield data(build.finish(held if held is not None else build.token(None, None), event))
            held = None
            if build.usage:
                yield data(build.usage_chunk(event))
    yield {"data": "[DONE]"}


def completion(items: list[Any], model: str, mode: str, logprobs: bool, metrics: bool) -> dict:
    """The non-streaming ``chat.completion`` object."""
    events = [i for i in items if isinstance(i, tuple)]
    tokens = [(e, entry) for e, entry in events if isinstance(e, TokenEvent)]
    done = next(e for e, _ in events if isinstance(e, DoneEvent))
    body: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"mlx-entropix-{__version__}-{mode}",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": {"content": [entry for _, entry in tokens]} if logprobs else None,
                "finish_reason": FINISH[done.finish_reason],
            }
        ],
        "usage": usage(done),
    }
    if metrics:
        body["entropix"] = {
            "tokens": [entropix_token(e) for e, _ in tokens],
            "summary": entropix_summary(done),
        }
    return body


def with_logprobs(work: Callable, n_top: int | None) -> Callable:
    """Wrap a generation job: pair each token with its logprobs entry, made in the worker
    thread (it reads the tokenizer's vocabulary). ``n_top`` None: no logprobs."""

    def wrapped(engine: Engine, should_stop: Callable[[], bool]) -> Iterator[Item]:
        for event in work(engine, should_stop):
            entry = None
            if n_top is not None and isinstance(event, TokenEvent):
                entry = logprob_entry(event, engine.token_bytes.of, n_top)
            yield event, entry

    return wrapped


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    engine = engine_of(request)
    return {
        "object": "list",
        "data": [
            {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "mlx-entropix"}
        ],
    }


@router.post(
    "/chat/completions",
    responses={
        200: {
            "description": "A chat.completion, or with stream=true an SSE stream of "
            "chat.completion.chunk objects ending with `data: [DONE]`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **ERROR_RESPONSES,
    },
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    settings, engine = settings_of(request), engine_of(request)
    mode = body.mode()
    max_tokens = resolve_max_tokens(body.max_completion_tokens or body.max_tokens, settings)
    ids = engine.prepare(body.chat(), None, max_tokens, settings.max_prompt_tokens)
    overrides: dict[str, Any] = {}
    if mode != "greedy":  # OpenAI's knobs first, the explicit sampler_config wins
        if body.temperature:
            overrides["temperature"] = body.temperature
        if body.top_p:
            overrides["top_p"] = body.top_p
    overrides.update(overrides_dict(body.sampler_config))
    config = engine.config_for(overrides)
    n_top = (body.top_logprobs or 0) if body.logprobs else None
    metrics = body.sampler is not None or bool(body.entropix)
    work = generation_work(
        ids,
        [mode],
        config=config,
        max_tokens=max_tokens,
        seed=body.seed,
        stop=body.stop_list(),
        top_logprobs=n_top or 0,
    )
    stream = JobStream(
        request.app.state.worker,
        with_logprobs(work, n_top),
        settings.request_timeout_s,
        label=f"v1/{mode}",
    )
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        build = ChunkBuilder(engine.model_id, mode, body.logprobs, metrics, include_usage)
        return EventSourceResponse(
            stream_chunks(stream, build), ping=settings.ping_s, send_timeout=SEND_TIMEOUT_S
        )
    items = await stream.collect(request.is_disconnected)
    message = next((m for m in map(_as_error, items) if m is not None), None)
    if message is not None:
        return error_response(request, 500, message)
    if not any(isinstance(i, tuple) and isinstance(i[0], DoneEvent) for i in items):
        return error_response(request, 499, "request cancelled")
    return JSONResponse(completion(items, engine.model_id, mode, body.logprobs, metrics))
