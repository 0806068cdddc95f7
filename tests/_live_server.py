"""A real uvicorn server on a free loopback port, in a thread, for the server tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings, create_app

import httpx
import uvicorn


class LiveServer:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self.app = create_app(settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on", timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 180
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def worker(self):
        return self.app.state.worker


@dataclass
class SSE:
    events: list[tuple[str, str]] = field(default_factory=list)  # (event name, data)
    comments: list[str] = field(default_factory=list)

    def json(self, name: str | None = None) -> list[dict]:
        return [
            json.loads(d) for n, d in self.events if (name is None or n == name) and d != "[DONE]"
        ]


def iter_sse(response: httpx.Response) -> Iterator[tuple[str, str] | str]:
    """Yield (event, data) per SSE event and the text of each comment line (pings)."""
    name, data = "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith(":"):
            yield line[1:].strip()
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield name, "\n".join(data)


def read_sse(response: httpx.Response) -> SSE:
    out = SSE()
    for item in iter_sse(response):
        if isinstance(item, str):
            out.comments.append(item)
        else:
            out.events.append(item)
    return out


def wait_idle(live: LiveServer, timeout: float = 60.0) -> dict:
    """The worker's status once it runs and holds nothing (a test's requests are all done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = live.worker.status()
        if not status["running"] and not status["pending"]:
            return status
        time.sleep(0.02)
    raise AssertionError("the worker did not go idle")


def openai_client(live: LiveServer, timeout: float = 120.0):
    """The official OpenAI client on the live server's ``/v1`` (no retries: a failure shows)."""
    import openai

    return openai.OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0,
                         timeout=timeout)  # fmt: skip
