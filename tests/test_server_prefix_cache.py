"""The prefix cache behind the real server: every endpoint reuses what an earlier request
prefilled, reports it (OpenAI's ``cached_tokens``, ``/api/info``), and gives the same bits."""

from __future__ import annotations

import time

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.prefix_cache import BLOCK, reusable_blocks
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
    reuse = reusable_blocks(prompt) * BLOCK

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
    ids = embedded.tokenizer.apply_chat_template(HISTORY)
    assert len(ids) == prompt
    r = client.completions.create(model="default", prompt=ids + [28, 29], max_tokens=2, seed=1)
    assert r.usage.prompt_tokens_details.cached_tokens == reusable_blocks(prompt + 2) * BLOCK


def _ending_into_a_block(tok, offset: int) -> list[dict]:
    """A history whose chat prompt ends ``offset`` tokens into a block."""
    for words in range(40, 400):
        history = [{"role": "user", "content": "Tell me about rivers, " + "and more " * words}]
        if len(tok.apply_chat_template(history)) % BLOCK == offset:
            return history
    raise AssertionError("no such history")


def _wait_filled(live, timeout: float = 120.0) -> None:
    """Until the server's idle work (the prefix cache taking in what was generated) is done."""
    extender = live.worker.resource.decoder.extender
    deadline = time.monotonic() + timeout
    while extender.current is not None or extender.waiting:
        assert time.monotonic() < deadline, "the idle filling did not end"
        time.sleep(0.05)


def test_the_next_turn_finds_the_previous_answer_cached(live, embedded):
    history = _ending_into_a_block(embedded.tokenizer, 100)
    body = {"messages": history, "mode": "greedy", "max_tokens": 48, "seed": 0}
    with httpx.stream("POST", f"{live.url}/api/generate", json=body, timeout=300) as resp:
        events = read_sse(resp)
    generated = [e["id"] for e in events.json("token")]
    done = events.json("done")[0]
    tok = embedded.tokenizer
    served = tok.apply_chat_template(history) + generated
    if done["finish_reason"] == "stop":
        served += [tok.eos_token_ids[0]]  # ended by the end-of-turn token, which it computed
    wait_idle(live)
    _wait_filled(live)
    turn = [*history, {"role": "assistant", "content": done["text"]},
            {"role": "user", "content": "Shorter, please."}]  # fmt: skip
    ids = tok.apply_chat_template(turn)
    pairs = enumerate(zip(ids, served, strict=False))
    common = next((i for i, (a, b) in pairs if a != b), min(len(ids), len(served)))
    r = _chat(openai_client(live), turn)
    want = min(common // BLOCK, reusable_blocks(len(ids))) * BLOCK
    assert r.usage.prompt_tokens_details.cached_tokens == want
    # the history ends 100 tokens into a block: an answer of 28 tokens or more fills it, and
    # the filled block (the answer's first tokens, cached while idle) is reused
    assert done["prompt_tokens"] % BLOCK == 100
    if common == len(served) >= (done["prompt_tokens"] // BLOCK + 1) * BLOCK:
        assert want > done["prompt_tokens"] // BLOCK * BLOCK
