"""What both routers share: the engine and settings of a request, the max_tokens rule, the
documented error responses. Its own module so that neither router imports the other."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse

from ..errors import InvalidRequestError
from .engine import Engine
from .schemas import DEFAULT_MAX_TOKENS, ErrorBody
from .settings import ServerSettings
from .worker import JobStream

INTERNAL_ERROR = "internal error while generating (details in the server log)"
# A client that stops reading (full socket buffers) is dropped after this long, which
# cancels its generation like a disconnect.
SEND_TIMEOUT_S = 30.0
# At shutdown (Ctrl-C) open streams' jobs are cancelled and get this long to end as a time
# limit ends them (a job stops within a token or a prefill layer) before they are cut.
SHUTDOWN_GRACE_S = 5.0

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request (e.g. prompt over the context)."},
    413: {"model": ErrorBody, "description": "Request body too large."},
    422: {"model": ErrorBody, "description": "Body does not match the schema."},
    503: {"model": ErrorBody, "description": "Queue full: retry after Retry-After seconds."},
}


def streamed(description: str) -> dict[int | str, dict[str, Any]]:
    """The documented responses of a route that may answer with an SSE stream."""
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    return {200: {"description": description, "content": sse}, **ERROR_RESPONSES}


def engine_of(request: Request) -> Engine:
    return request.app.state.worker.resource


def settings_of(request: Request) -> ServerSettings:
    return request.app.state.settings


def resolve_max_tokens(
    max_tokens: int | None, settings: ServerSettings, default: int = DEFAULT_MAX_TOKENS
) -> int:
    """The request's max_tokens, or the default (at most the server's cap: a client that
    sent none is not refused); a request's own over the cap is a 400."""
    if max_tokens is None:
        return min(default, settings.max_tokens_limit)
    if max_tokens > settings.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}"
        )
    return max_tokens


class _CancelAtShutdown:
    """sse_starlette's ``shutdown_event``: it calls ``set()`` once the server shuts down. Else it
    cancelled the stream's task outright: the client's stream was cut, without its last
    events, and uvicorn logged "ASGI callable returned without completing response"."""

    def __init__(self, stream: JobStream):
        self.stream = stream

    def set(self) -> None:
        self.stream.cancel()


def sse_response(content: Any, stream: JobStream, settings: ServerSettings) -> EventSourceResponse:
    """The SSE response of ``stream``'s job: keep-alive pings, a send timeout, and at shutdown
    the job cancelled so that the stream ends with its last events (done, [DONE])."""
    return EventSourceResponse(
        content,
        ping=settings.ping_s,
        send_timeout=SEND_TIMEOUT_S,
        shutdown_event=_CancelAtShutdown(stream),  # type: ignore[arg-type]
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )
