"""OpenAI-compatible ``/v1/chat/completions`` (streaming and not) and ``/v1/models[/{id}]``.

Streams keep what clients rely on: ``logprobs.content`` in every token's chunk (mlx-lm drops
them when streaming), ``finish_reason`` on the last content chunk, an optional usage chunk, then
``data: [DONE]``. The extensions (``schemas.ChatCompletionRequest``; the official client sends
them with ``extra_body={...}``) put ``entropix: {index, state, action, metrics, params}`` in
every chunk (the last one also ``summary``). ``n`` choices come from one batch
(``engine.generation_work``); streamed chunks carry one choice each, usage counts all of them,
and with ``n > 1`` the non-streaming extension sits in each choice.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..config import Mode
from ..events import DoneEvent, ErrorEvent, Event, TokenEvent
from .deps import (
    INTERNAL_ERROR,
    engine_of,
    resolve_max_tokens,
    settings_of,
    sse_response,
    streamed,
)
from .engine import Engine, generation_work
from .errors import error_body, error_response
from .schemas import ChatCompletionRequest, OpenAIFields, overrides_dict
from .worker import IDLE, JobFailed, JobStream

router = APIRouter(prefix="/v1", tags=["openai"])

# OpenAI's values. A request cut short (the server's --timeout, its shutdown) is a limit reached:
# "length", as llama.cpp's server ends one at its time limit (vLLM's "abort" is no OpenAI value
# and strict clients refuse it); the entropix extension's summary keeps "cancelled".
FINISH = {"stop": "stop", "stop_string": "stop", "length": "length", "cancelled": "length"}
Item = tuple[int, Event, dict[str, Any] | None]  # choice index, event, logprobs entry (if asked)
Tokens = list[tuple[TokenEvent, dict[str, Any] | None]]


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
    keep = {"state_counts", "action_counts", "seed", "ttft_s"}
    keep |= {"confidence", "answer_span", "abstained"}  # the answer's (confidence.py)
    keep |= {"agreement", "confidence_samples"}  # its hidden sampled rows' (agreement.py)
    return done.model_dump(include=keep) | {
        "decode_tok_s": done.decode_tok_s,
        "finish_reason": done.finish_reason,
    }


def entropix_chunk(event: TokenEvent | None, done: DoneEvent | None) -> dict[str, Any]:
    """A streamed chunk's extension: its token's fields, and on a choice's last the summary."""
    out = entropix_token(event) if event is not None else {}
    if done is not None:
        out["summary"] = entropix_summary(done)
    return out


def entropix_detail(tokens: Tokens, done: DoneEvent) -> dict[str, Any]:
    """The non-streaming extension of one choice: every token's fields and the summary."""
    return {"tokens": [entropix_token(e) for e, _ in tokens], "summary": entropix_summary(done)}


def with_detail(body: dict[str, Any], choices: list[tuple[Tokens, DoneEvent]], metrics: bool):
    """A non-streaming object with its extension: per choice with ``n > 1``, else beside them."""
    if metrics and len(choices) > 1:
        for out, (tokens, done) in zip(body["choices"], choices, strict=True):
            out["entropix"] = entropix_detail(tokens, done)
    elif metrics:
        body["entropix"] = entropix_detail(*choices[0])
    return body


def usage(dones: Sequence[DoneEvent]) -> dict[str, Any]:
    """One prompt, the completion tokens of every choice; the prompt tokens served from the
    prefix cache as OpenAI reports its cached ones (``prompt_tokens_details.cached_tokens``)."""
    prompt, completion = dones[0].prompt_tokens, sum(d.generated_tokens for d in dones)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": dones[0].cached_tokens},
    }


def response_head(prefix: str, kind: str, model: str, mode: str) -> dict[str, Any]:
    """The fields every OpenAI object starts with: a fresh ``{prefix}-`` id, ``object: kind``."""
    return {
        "id": f"{prefix}-{uuid.uuid4().hex}",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": f"mlx-entropix-{__version__}-{mode}",
    }


def by_choice(items: list[Item], n: int) -> list[tuple[Tokens, DoneEvent]] | None:
    """Each choice's token events (with their logprobs entries) and its done event; None when
    a choice never finished (the request was cancelled)."""
    tokens: list[Tokens] = [[] for _ in range(n)]
    dones: list[DoneEvent | None] = [None] * n
    for row, event, entry in items:  # no JobFailed: ``respond`` answered those first
        if isinstance(event, TokenEvent):
            tokens[row].append((event, entry))
        elif isinstance(event, DoneEvent):
            dones[row] = event
    if any(d is None for d in dones):
        return None
    return list(zip(tokens, dones, strict=True))  # type: ignore[arg-type]


class ChatChunks:
    """The ``chat.completion`` objects of one request (streamed chunks or the whole)."""

    def __init__(self, model: str, mode: str, logprobs: bool, metrics: bool, usage: bool):
        self.model, self.mode = model, mode
        self.head = response_head("chatcmpl", "chat.completion.chunk", model, mode)
        self.logprobs, self.metrics, self.usage = logprobs, metrics, usage
        self.started: set[int] = set()

    def chunk(self, row: int, held: tuple[TokenEvent, Any] | None, done: DoneEvent | None) -> dict:
        """The chunk of choice ``row``'s token (None: an empty final chunk), the choice's last
        with its ``done``."""
        event, entry = held or (None, None)
        delta: dict[str, Any] = {"content": event.text if event is not None else ""}
        if row not in self.started:  # the role rides on a choice's first chunk (with logprobs)
            delta = {"role": "assistant", **delta}
            self.started.add(row)
        choice = {
            "index": row,
            "delta": delta,
            "logprobs": {"content": [entry] if entry else []} if self.logprobs else None,
            "finish_reason": FINISH[done.finish_reason] if done is not None else None,
        }
        chunk: dict[str, Any] = {**self.head, "choices": [choice]}
        if self.usage:
            chunk["usage"] = None
        if self.metrics:
            chunk["entropix"] = entropix_chunk(event, done)
        return chunk

    def whole(self, choices: list[tuple[Tokens, DoneEvent]]) -> dict[str, Any]:
        """The non-streaming ``chat.completion`` object (``choices`` from ``by_choice``)."""
        out = [
            {
                "index": i,
                "message": {"role": "assistant", "content": done.text},
                "logprobs": {"content": [entry for _, entry in tokens]} if self.logprobs else None,
                "finish_reason": FINISH[done.finish_reason],
            }
            for i, (tokens, done) in enumerate(choices)
        ]
        body = {
            **response_head("chatcmpl", "chat.completion", self.model, self.mode),
            "choices": out,
            "usage": usage([done for _, done in choices]),
        }
        return with_detail(body, choices, self.metrics)


def _as_error(item: Any) -> str | None:
    if isinstance(item, JobFailed):
        return INTERNAL_ERROR
    if isinstance(item, tuple) and isinstance(item[1], ErrorEvent):
        return item[1].message
    return None


Released = tuple[int, tuple[TokenEvent, Any] | None, DoneEvent | None]


async def released(stream: JobStream) -> AsyncIterator[Released | str]:
    """A stream's ``(row, token, done)`` per choice in the order OpenAI streams send them: a
    choice's first token at once (time to first token), each later one held until the choice's
    next event, so the last goes out with its ``DoneEvent`` (``token`` None: an empty chunk).
    An error: what was held, then its message (a str), and the end."""
    held: dict[int, tuple[TokenEvent, Any]] = {}  # per choice
    started: set[int] = set()  # choices whose first token went out
    async for item in stream:
        message = _as_error(item)
        if message is not None:
            for row in sorted(held):
                yield row, held[row], None
            yield message
            return
        row, event, entry = item
        if isinstance(event, TokenEvent):
            if row in held:
                yield row, held.pop(row), None
            if row in started:
                held[row] = (event, entry)
            else:
                started.add(row)
                yield row, (event, entry), None
        elif isinstance(event, DoneEvent):
            yield row, held.pop(row, None), event


async def sse_chunks(
    stream: JobStream, build: Any, usage_chunk: bool, n: int
) -> AsyncIterator[dict[str, str]]:
    """An OpenAI stream's SSE ``data:`` lines (chat and text completions alike)."""

    def data(obj: Any) -> dict[str, str]:
        return {"data": json.dumps(obj, ensure_ascii=False, separators=(",", ":"))}

    dones: list[DoneEvent] = []
    async for out in released(stream):
        if isinstance(out, str):
            yield data(
                {"error": {"message": out, "type": "server_error", "param": None, "code": None}}
            )
            break
        row, token, done = out
        yield data(build.chunk(row, token, done))
        if done is not None:
            dones.append(done)
            if usage_chunk and len(dones) == n:
                yield data({**build.head, "choices": [], "usage": usage(dones)})
    yield {"data": "[DONE]"}


def with_logprobs(work: Callable, n_top: int | None) -> Callable:
    """``(row, event)`` -> ``(row, event, entry)``: each token's logprobs entry (None: no
    ``n_top``), made in the worker thread (it reads the tokenizer's vocabulary)."""

    def wrapped(engine: Engine, should_stop: Callable[[], bool]) -> Iterator[Item]:
        for item in work(engine, should_stop):
            if item is IDLE:
                yield item
                continue
            row, event = item
            entry = None
            if n_top is not None and isinstance(event, TokenEvent):
                entry = logprob_entry(event, engine.token_bytes.of, n_top)
            yield row, event, entry

    wrapped.size = getattr(work, "size", 1)  # type: ignore[attr-defined]
    return wrapped


def sampler_config(engine: Engine, mode: str, body: Any) -> Any:
    """The request's sampler config: OpenAI's temperature/top_p first (not for greedy), then
    the explicit ``sampler_config`` extension, which wins. A 0 is a value, not "unset": with
    a sampler named, temperature 0 is its argmax, and top_p 0 keeps the top token only (the
    config takes no 0 mass: the smallest positive one keeps exactly that token)."""
    knobs = {} if mode == "greedy" else {"temperature": body.temperature, "top_p": body.top_p}
    if knobs.get("top_p") == 0.0:
        knobs["top_p"] = math.ulp(0.0)
    overrides = {k: v for k, v in knobs.items() if v is not None}
    return engine.config_for(overrides | overrides_dict(body.sampler_config), body.preset)


def start_job(
    request: Request,
    body: OpenAIFields,
    prompt: Any,
    mode: Mode,
    max_tokens: int,
    n_top: int | None,
    fmt: str = "chat",
) -> JobStream:
    """An OpenAI request's job (chat and text completions alike), checked (4xx) and queued."""
    label = f"v1/completions/{mode}" if fmt == "raw" else f"v1/{mode}"
    settings, engine = settings_of(request), engine_of(request)
    ids = engine.prepare(prompt, None, max_tokens, settings.max_prompt_tokens)
    work = generation_work(ids, [mode], config=sampler_config(engine, mode, body),
                           max_tokens=max_tokens, seed=body.seed, stop=body.stop_list(),
                           top_logprobs=n_top or 0, n=body.n, fmt=fmt,
                           min_confidence=body.min_confidence,
                           confidence_samples=body.confidence_samples)  # fmt: skip
    return JobStream(request.app.state.worker, with_logprobs(work, n_top),
                     settings.request_timeout_s, label=label)  # fmt: skip


async def respond(request: Request, body: OpenAIFields, stream: JobStream, build: Any) -> Any:
    """With ``stream``, the SSE stream of ``build``'s chunks; without, ``build.whole`` of the
    ``n`` choices (or an error response). ``build``: ``ChatChunks`` or ``TextChunks``."""
    if body.stream:
        chunks = sse_chunks(stream, build, body.usage_chunk(), body.n)
        return sse_response(chunks, stream, settings_of(request))
    items = await stream.collect(request.is_disconnected)
    message = next((m for m in map(_as_error, items) if m is not None), None)
    if message is not None:
        return error_response(request, 500, message)
    choices = by_choice(items, body.n)
    if choices is None:
        return error_response(request, 499, "request cancelled")
    return JSONResponse(build.whole(choices))


def _model_card(engine: Engine) -> dict[str, Any]:
    return {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "mlx-entropix"}


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model_card(engine_of(request))]}


@router.get("/models/{model_id:path}")
async def model(model_id: str, request: Request) -> Any:
    """The openai client's ``models.retrieve``: the served model, else OpenAI's 404."""
    card = _model_card(engine_of(request))
    if model_id != card["id"]:
        message = f"The model {model_id!r} does not exist (this server serves {card['id']!r})"
        return JSONResponse(error_body(request.url.path, 404, message, "model_not_found"), 404)
    return card


@router.post(
    "/chat/completions",
    responses=streamed(
        "A chat.completion, or with stream=true an SSE stream of "
        "chat.completion.chunk objects ending with `data: [DONE]`."
    ),
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    settings, engine, mode = settings_of(request), engine_of(request), body.mode()
    max_tokens = resolve_max_tokens(body.max_completion_tokens or body.max_tokens, settings)
    n_top = (body.top_logprobs or 0) if body.logprobs else None
    stream = start_job(request, body, body.chat(), mode, max_tokens, n_top)
    usage_chunk = body.usage_chunk()  # chat puts "usage": null in every chunk before it
    build = ChatChunks(engine.model_id, mode, body.logprobs, body.wants_extension(), usage_chunk)
    return await respond(request, body, stream, build)
