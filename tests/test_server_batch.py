"""Requests served together: concurrent streams share decode steps (continuous batching) and
each gets exactly what it gets served alone; a short request does not wait for a long
prefill. The real server on a loopback port."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings

import httpx
import pytest
from conftest import BATCH_INVARIANT

from tests._live_server import LiveServer, iter_sse, read_sse, wait_idle

LONG = "The quick brown fox jumps over the lazy dog. " * 200  # about 2,000 tokens
# (path, body): greedy and seeded sampling, a compare pair, two choices of one request
REQUESTS = [
    ("/api/generate", {"prompt": "Name three colours.", "mode": "greedy", "max_tokens": 14}),
    ("/api/generate", {"prompt": "Write a haiku.", "mode": "entropix", "seed": 5,
                       "max_tokens": 12}),
    ("/api/generate", {"prompt": "Count to five.", "mode": "normal", "seed": 9,
                       "max_tokens": 10}),
    ("/api/compare", {"prompt": "Say hi.", "modes": ["entropix", "normal"], "seed": 2,
                      "max_tokens": 8}),
]  # fmt: skip


@pytest.fixture(scope="module")
def live():
    settings = ServerSettings(max_queue=8, max_tokens_limit=64, ui_dir=None, max_batch=8)
    with LiveServer(settings) as server:
        yield server


def run(live: LiveServer, path: str, body: dict) -> list[tuple[str, dict]]:
    with httpx.Client(base_url=live.url, timeout=300) as c:
        with c.stream("POST", path, json=body) as r:
            assert r.status_code == 200, r.read()
            sse = read_sse(r)
    return [(name, e) for name in ("token", "done") for e in sse.json(name)]


def view(events: list[tuple[str, dict]], expected: bool = False) -> list:
    """What must not depend on the batch: ids, texts, decisions, metrics and log-probs (bitwise
    when the BLAS is batch-invariant, else within 1e-4: rounding would flip at a boundary),
    the final text; not timings. ``expected``: the side compared against (the tolerant one)."""
    out = []
    for name, e in events:
        if name == "token":
            numbers = [*e["metrics"].values(), e["logprob"]]
            if expected and not BATCH_INVARIANT:
                numbers = pytest.approx(numbers, rel=1e-4, abs=1e-5, nan_ok=True)
            out.append((e["mode"], e["id"], e["text"], e["state"], e["action"], numbers))
        else:
            out.append((e["mode"], e["text"], e["finish_reason"], e["generated_tokens"]))
    return out


def test_concurrent_requests_share_steps_and_match_serial_runs(live):
    wait_idle(live)
    decoder = live.worker.resource.decoder
    assert decoder is not None
    with httpx.Client(base_url=live.url, timeout=30) as c:
        limits, runtime = (c.get("/api/info").json()[k] for k in ("limits", "runtime"))
    assert (limits["max_batch"], limits["batched_decoding"]) == (8, True)
    assert runtime["batch_invariant"] is BATCH_INVARIANT
    steps = decoder.steps
    with ThreadPoolExecutor(len(REQUESTS)) as pool:
        together = list(pool.map(lambda pb: run(live, *pb), REQUESTS))
    shared = decoder.steps - steps
    tokens = sum(1 for events in together for name, _ in events if name == "token")
    assert shared < tokens * 0.75  # rows of different requests decoded in the same steps
    for (path, body), events in zip(REQUESTS, together, strict=True):
        alone = run(live, path, body)
        assert view(alone, expected=True) == view(events), f"{path} {body} differs when batched"


@pytest.mark.parametrize("mode", ["greedy", "fork"])
def test_a_short_request_is_served_while_a_long_prompt_prefills(live, mode):
    """In the shared batch, its prefill in time slices (greedy; fork: its branches rows of the
    batch too). Each mode's prompt starts differently: the prefix cache serves neither."""
    wait_idle(live)
    first_long: list[float] = []
    done_long = threading.Event()

    def long_client() -> None:
        with httpx.Client(base_url=live.url, timeout=300) as c:
            body = {"prompt": f"{mode}: {LONG}", "mode": mode, "max_tokens": 2}
            with c.stream("POST", "/api/generate", json=body) as r:
                for item in iter_sse(r):
                    if isinstance(item, tuple) and item[0] == "token" and not first_long:
                        first_long.append(time.monotonic())
        done_long.set()

    thread = threading.Thread(target=long_client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not live.worker.status()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # the long prefill is under way
    events = run(live, "/api/generate", {"prompt": "Hi", "mode": "greedy", "max_tokens": 4})
    finished = time.monotonic()
    assert events[-1][0] == "done" and events[-1][1]["generated_tokens"] >= 1
    assert not first_long, "the short request waited for the long prompt's prefill"
    assert done_long.wait(300)
    assert first_long and first_long[0] > finished
