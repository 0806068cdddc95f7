"""The prefix cache behind the real server: every endpoint reuses what an earlier request
prefilled, reports it (OpenAI's ``cached_tokens``, ``/api/info``), and gives the same bits."""

from __future__ import annotations

import time

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.prefix_cache import (
    BLOCK,
    chunk_ends,
    closing_token,
    complete,
    final_pass,
    reusable,
)
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer, openai_client, read_sse, wait_idle

HISTORY = [
    {"role": "system", "content": "You are a careful assistant. " * 12},
    {"role": "user", "content": "Here are my notes on rivers. " * 25 + "Summarise them."},
]


@pytest.fixture(scope="module")
def live():
    settings = ServerSettings(max_tokens_limit=64, ui_dir=None, prefix_cache_mb=64)
    with LiveServer(settings) as server:
        yield server


def _info(live) -> dict:
    return httpx.get(f"{live.url}/api/info").json()["prefix_cache"]


def _chat(client, messages, **kw):
    return client.chat.completions.create(
        model="default", messages=messages, max_tokens=6, seed=3, logprobs=True,
        top_logprobs=3, extra_body={"entropix": True}, **kw,
    )  # fmt: skip


def _logprobs(r) -> list:
    return [(c.token, c.logprob, [(t.token, t.logprob) for t in c.top_logprobs])
            for c in r.choices[0].logprobs.content]  # fmt: skip


def test_every_endpoint_reuses_the_prefix_with_the_same_bits(live, embedded):
    client = openai_client(live)
    before = _info(live)
    assert before["enabled"] and before["max_mb"] == 64
    first = _chat(client, HISTORY)
    prompt = first.usage.prompt_tokens
    assert prompt > 2 * BLOCK and first.usage.prompt_tokens_details.cached_tokens == 0
    ids = embedded.tokenizer.apply_chat_template(HISTORY)
    ends = set(embedded.tokenizer.eos_token_ids)
    reuse = reusable(ids, ends)
    assert len(ids) == prompt and reuse > prompt // 2

    again = _chat(client, HISTORY)  # a hit: the same bits as the miss
    assert again.usage.prompt_tokens_details.cached_tokens == reuse
    assert again.choices[0].message.content == first.choices[0].message.content
    assert _logprobs(again) == _logprobs(first)
    assert again.model_extra["entropix"]["tokens"] == first.model_extra["entropix"]["tokens"]

    # streamed, with usage: the same text and the cached tokens in the usage chunk
    chunks = list(_chat(client, HISTORY, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == first.choices[0].message.content
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == reuse

    # /api/generate (SSE) with the same messages: its done event says so too
    body = {"messages": HISTORY, "mode": "greedy", "max_tokens": 3, "seed": 0}
    with httpx.stream("POST", f"{live.url}/api/generate", json=body, timeout=120) as resp:
        done = read_sse(resp).json("done")[0]
    assert done["cached_tokens"] == reuse

    after = _info(live)
    assert after["hits"] - before["hits"] == 3 and after["misses"] - before["misses"] == 1
    assert after["cached_tokens"] - before["cached_tokens"] == 3 * reuse
    assert after["used_mb"] <= after["max_mb"]

    # /v1/completions with the prompt's token ids and a new tail: the whole blocks reused
    r = client.completions.create(model="default", prompt=ids + [28, 29], max_tokens=2, seed=1)
    assert r.usage.prompt_tokens_details.cached_tokens == reusable(ids + [28, 29], ends)


def _wait_filled(live, timeout: float = 120.0) -> None:
    """Until the server's idle work (the prefix cache taking in what was generated) is done."""
    extender = live.worker.resource.decoder.extender
    deadline = time.monotonic() + timeout
    while extender.current is not None or extender.waiting:
        assert time.monotonic() < deadline, "the idle filling did not end"
        time.sleep(0.05)


def test_the_next_turn_finds_the_previous_answer_cached(live, embedded):
    body = {"messages": HISTORY, "mode": "greedy", "max_tokens": 48, "seed": 0}
    with httpx.stream("POST", f"{live.url}/api/generate", json=body, timeout=300) as resp:
        events = read_sse(resp)
    done = events.json("done")[0]
    tok, ends = embedded.tokenizer, set(embedded.tokenizer.eos_token_ids)
    prompt = tok.apply_chat_template(HISTORY)
    served = prompt + [e["id"] for e in events.json("token")]
    wait_idle(live)
    _wait_filled(live)
    turn = [*HISTORY, {"role": "assistant", "content": done["text"]},
            {"role": "user", "content": "Shorter, please."}]  # fmt: skip
    ids = tok.apply_chat_template(turn)
    if done["finish_reason"] == "stop" and ids[len(served)] in ends:
        served.append(ids[len(served)])  # the end-of-turn token it generated last
    elif done["finish_reason"] == "length":  # cut: the filling closed it as the template does
        served.append(closing_token(tok, ends))
    pairs = enumerate(zip(ids, served, strict=False))
    common = next((i for i, (a, b) in pairs if a != b), min(len(ids), len(served)))
    held = chunk_ends(served, ends)[: complete(served, chunk_ends(served, ends), ends)]
    upto = max((e for e in held if e <= common), default=0)  # what the cache holds of ids
    chunks = chunk_ends(ids, ends)
    want = max((e for e in chunks[: final_pass(chunks)] if e <= upto), default=0)
    r = _chat(openai_client(live), turn)
    assert r.usage.prompt_tokens_details.cached_tokens == want
    if common == len(served):
        assert want == len(served)  # all of it: only the new message is prefilled
