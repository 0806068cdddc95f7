"""Request body size cap (pure ASGI middleware): 413 before the body is parsed or buffered."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .guards import send_json_error


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body over the {self.max_bytes}-byte limit"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _drain(receive)
            await send_json_error(scope, send, 413, self._message())
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
                    raise HTTPException(413, self._message())
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
