"""HTTP-level guards (pure ASGI middleware) that answer in the API's own JSON error format.

- ``BodySizeLimit``: the request body cap, a 413 before the body is parsed or buffered.
- ``HostGuard``: the Host allow-list against DNS rebinding (Starlette's TrustedHostMiddleware
  rules, but its 400 is ``text/plain``; this one is ``{"detail": ...}`` or OpenAI's shape).
- ``JsonCORS``: Starlette's CORS, but a refused preflight (its ``text/plain`` 400 "Disallowed CORS
  origin") in the JSON error shape, same status and CORS headers.
- ``HeadAsGet``: HEAD is answered wherever GET is (FastAPI routes take only the methods they
  declare; Starlette's own routes add HEAD to GET): the GET handler runs, the body is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body


async def send_json_error(
    scope: Scope, send: Send, status: int, message: str, headers: Sequence[tuple[str, str]] = ()
) -> None:
    """A JSON error response straight from middleware (before the app's handlers)."""
    raw = json.dumps(error_body(scope.get("path", ""), status, message)).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


def host_name(host: str) -> str:
    """The name part of a Host header, lower case: ``[::1]:8000`` -> ``[::1]``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    return host.split(":", 1)[0]


class HostGuard:
    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]):
        for pattern in allowed_hosts:
            if "*" in pattern[1:] or (pattern.startswith("*") and not pattern.startswith("*.")):
                raise ValueError(f"bad allowed host {pattern!r}: use '*' or '*.example.com'")
        self.app = app
        self.allowed = [p.lower() for p in allowed_hosts]

    def allows(self, host: str) -> bool:
        name = host_name(host)
        return bool(name) and any(
            p == "*" or name == p or (p.startswith("*.") and name.endswith(p[1:]))
            for p in self.allowed
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.allows(Headers(scope=scope).get("host", "")):
            await send_json_error(scope, send, 400, "invalid Host header")
            return
        await self.app(scope, receive, send)


class JsonCORS(CORSMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope) if scope["type"] == "http" else Headers()
        preflight = "origin" in headers and "access-control-request-method" in headers
        if not (preflight and scope["method"] == "OPTIONS"):
            await super().__call__(scope, receive, send)
            return
        response = self.preflight_response(request_headers=headers)  # as CORSMiddleware
        if response.status_code < 400:
            await response(scope, receive, send)
            return
        text = response.body.decode()  # "Disallowed CORS origin, method"
        cors = [(k, v) for k, v in response.headers.items() if k.startswith(("access-", "vary"))]
        await send_json_error(scope, send, response.status_code, text[0].lower() + text[1:], cors)


class HeadAsGet:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest follows; send one empty final body
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.message = f"request body over the {max_bytes}-byte limit"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _drain(receive)
            await send_json_error(scope, send, 413, self.message)
            return
        received = 0

        async def limited() -> Message:
            # Chunked bodies carry no Content-Length: count as they arrive. FastAPI re-raises
            # an HTTPException raised while it reads the body, so this becomes the 413.
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise HTTPException(413, self.message)
            return message

        await self.app(scope, limited, send)


DRAIN_LIMIT = 64 * 1024 * 1024


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of the body: answering while the client is still sending makes
    the kernel reset the connection, and the client would see that instead of the 413."""
    dropped = 0
    while dropped < DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
