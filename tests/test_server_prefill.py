"""A long prompt cannot hold the server hostage: the prompt cap (400), a disconnect and the
time limit during the prefill free the worker within about a layer's work, and the next request
is served at once. The real server on a loopback port."""

from __future__ import annotations

import threading
import time

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer, read_sse, wait_idle

LONG = "The quick brown fox jumps over the lazy dog. " * 200  # about 2,000 tokens


@pytest.fixture(scope="module")
def live():
    settings = ServerSettings(max_queue=4, max_tokens_limit=64, ui_dir=None, ping_s=15)
    with LiveServer(settings) as server:
        yield server


def wait_running(live: LiveServer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not live.worker.status()["running"]:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)


def test_prompt_over_the_cap_is_a_clear_400(live):
    live.settings.max_prompt_tokens = 64
    try:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            r = c.post("/api/generate", json={"prompt": LONG, "max_tokens": 2})
            assert r.status_code == 400
            assert r.json()["detail"].endswith(
                "this server takes at most 64 prompt tokens per request (--max-prompt-tokens)"
            )
            r = c.post(
                "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": LONG}], "max_tokens": 2},
            )
            assert r.status_code == 400
            assert r.json()["error"]["code"] == "context_length_exceeded"
            assert "at most 64 prompt tokens" in r.json()["error"]["message"]
            info = c.get("/api/info").json()
            assert info["limits"]["max_prompt_tokens"] == 64
            # Under the cap: served.
            r = c.post("/api/generate", json={"prompt": "Hi", "max_tokens": 1})
            assert r.status_code == 200
    finally:
        live.settings.max_prompt_tokens = 4096


def test_disconnect_during_a_long_prefill_frees_the_worker(live):
    wait_idle(live)
    before = live.worker.status()["cancelled"]
    closed: list[float] = []

    def hostile() -> None:
        # No byte comes during the prefill (pings every 15 s): the read times out after 2 s
        # and the client drops the connection, as a closed browser tab does.
        timeout = httpx.Timeout(30, read=2)
        with httpx.Client(base_url=live.url, timeout=timeout) as c:
            try:
                with c.stream("POST", "/api/generate", json={"prompt": LONG, "max_tokens": 4}) as r:
                    for _ in r.iter_lines():
                        pass
            except httpx.ReadTimeout:
                pass
        closed.append(time.monotonic())

    thread = threading.Thread(target=hostile, daemon=True)
    thread.start()
    wait_running(live)
    thread.join(60)
    assert closed, "the client did not give up"
    status = wait_idle(live)
    freed_s = time.monotonic() - closed[0]
    job = status["last_job"]
    assert status["cancelled"] == before + 1 and job["status"] == "cancelled"
    assert job["items"] <= 1  # at most the `done` of a cancelled run: no token was made
    # The next request is served promptly (the prefill alone would take a minute or more).
    start = time.monotonic()
    with httpx.Client(base_url=live.url, timeout=60) as c:
        with c.stream("POST", "/api/generate", json={"prompt": "Hi", "max_tokens": 3}) as r:
            sse = read_sse(r)
    served_s = time.monotonic() - start
    assert sse.events[-1][0] == "done"
    print(f"worker freed {freed_s:.2f} s after the disconnect; next request {served_s:.2f} s")
    assert freed_s < 5.0 and served_s < 15.0


def test_time_limit_covers_the_prefill(live):
    wait_idle(live)
    live.settings.request_timeout_s = 1.0
    try:
        start = time.monotonic()
        with httpx.Client(base_url=live.url, timeout=60) as c:
            with c.stream("POST", "/api/generate", json={"prompt": LONG, "max_tokens": 4}) as r:
                done = read_sse(r).json("done")
        took = time.monotonic() - start
    finally:
        live.settings.request_timeout_s = 300.0
    assert done and done[0]["finish_reason"] == "cancelled"
    assert done[0]["generated_tokens"] == 0 and done[0]["prompt_tokens"] > 1500
    assert live.worker.status()["last_job"]["timed_out"]
    assert took < 6.0  # the limit, plus at most about a layer's work


def test_max_prompt_tokens_flag():
    from mlx_entropix.server.main import parse_args, settings_from

    assert settings_from(parse_args([])).max_prompt_tokens == 4096
    assert settings_from(parse_args(["--max-prompt-tokens", "8192"])).max_prompt_tokens == 8192
    with pytest.raises(ValueError, match="--max-prompt-tokens must be at least 1"):
        settings_from(parse_args(["--max-prompt-tokens", "0"]))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_server_answers_only_loopback_host_headers(host):
    """The DNS-rebinding guard, IPv6 included: a bracketed "[::1]:port" Host header passes."""
    from mlx_entropix.server.guards import HostGuard
    from mlx_entropix.server.main import parse_args, settings_from

    allowed = settings_from(parse_args(["--host", host])).allowed_hosts
    assert allowed is not None
    guard = HostGuard(None, allowed)  # type: ignore[arg-type]  # allows() needs no app
    assert all(guard.allows(h) for h in ("[::1]:8000", "127.0.0.1:8000", "localhost:8000"))
    assert not any(guard.allows(h) for h in ("evil.example", "evil.example:8000", "[::2]:80", ""))
    assert settings_from(parse_args(["--host", "0.0.0.0"])).allowed_hosts is None
