"""What both routers share: the engine and settings of a request, the max_tokens rule, the
documented error responses. Its own module so that neither router imports the other."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ..errors import InvalidRequestError
from .engine import Engine
from .schemas import DEFAULT_MAX_TOKENS, ErrorBody
from .settings import ServerSettings

INTERNAL_ERROR = "internal error while generating (details in the server log)"
# A client that stops reading (full socket buffers) is dropped after this long, which
# cancels its generation like a disconnect.
SEND_TIMEOUT_S = 30.0

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
