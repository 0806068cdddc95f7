"""Error responses: one clear line for the client, never a stack trace.

``/api/*`` answers ``{"detail": "..."}``; ``/v1/*`` answers OpenAI's
``{"error": {"message", "type", "param", "code"}}`` so OpenAI clients show the message.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..errors import EntropixError, PromptTooLongError
from .worker import QueueFullError

log = logging.getLogger("mlx_entropix.server")


def describe_validation(errors: list[Any]) -> tuple[str, bool]:
    """(one-line message, is the body malformed JSON) from pydantic/FastAPI error dicts."""
    parts: list[str] = []
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            return f"malformed JSON body: {reason}", True
        whole = _whole_body(err)
        if whole is not None:
            return whole
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown or unsupported field"
        elif err.get("type") == "finite_number":
            text = str(err.get("input")).strip().lower()
            name = "NaN" if "nan" in text else "-Infinity" if text.startswith("-") else "Infinity"
            msg = f"must be a finite number, not {name}"
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else f"request body: {msg}")
    if not parts:
        return "invalid request", False
    extra = f" (and {len(parts) - 3} more errors)" if len(parts) > 3 else ""
    return "; ".join(parts[:3]) + extra, False


def _whole_body(err: dict[str, Any]) -> tuple[str, bool] | None:
    """What is wrong with a body that is not a JSON object at all, or None. FastAPI parses
    the body as JSON only under a JSON Content-Type (curl's ``-d`` sends a form's; Python's
    ``requests`` with ``data=`` none): the bytes it hands on read as "Input should be a valid
    dictionary", for a body that may well be JSON."""
    if tuple(err.get("loc", ())) != ("body",):
        return None
    if err.get("type") == "missing":
        return "the request body is empty: send a JSON object", False
    if err.get("type") not in ("model_attributes_type", "dict_type"):
        return None
    if isinstance(err.get("input"), bytes):
        return (
            "the request body was not read as JSON: send it with Content-Type: application/json",
            True,
        )
    return "the request body must be a JSON object", False


def in_family(path: str, prefix: str) -> bool:
    """Whether ``path`` is under ``prefix`` ("/v1", "/api"), read with its leading slashes
    collapsed: ``//v1/chat/completions`` (a base URL ending in "/" joined to "/v1/...") is an
    OpenAI client's request, and its 404 must be in the shape that client shows."""
    path = "/" + path.lstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def is_openai(path: str) -> bool:
    return in_family(path, "/v1")


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """``{"detail": message}``, or OpenAI's error object under ``/v1/``."""
    if not is_openai(path):
        return {"detail": message}
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 503:
        kind = "server_busy"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def error_response(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message), status, headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, malformed = describe_validation(list(exc.errors()))
        status = 400 if malformed or is_openai(request.url.path) else 422
        return error_response(request, status, message)

    @app.exception_handler(EntropixError)
    async def _entropix(request: Request, exc: EntropixError) -> JSONResponse:
        code = "context_length_exceeded" if isinstance(exc, PromptTooLongError) else None
        return JSONResponse(error_body(request.url.path, 400, str(exc), code), 400)

    @app.exception_handler(QueueFullError)
    async def _busy(request: Request, exc: QueueFullError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(request, 503, str(exc), headers=headers)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        allow = [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
        if allow:  # HeadAsGet serves HEAD wherever GET is
            headers["Allow"] = ", ".join(sorted({*allow, "HEAD"} if "GET" in allow else set(allow)))
        message = str(exc.detail)
        if exc.status_code == 405:
            message = f"method {request.method} not allowed here (allowed: {headers['Allow']})"
        elif exc.status_code == 404 and message == "Not Found":
            message = f"not found: {request.url.path}"
        return error_response(request, exc.status_code, message, headers=headers or None)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal server error (details in the server log)")
