"""OpenAI's ``n`` (several choices from one batch) on /v1/chat/completions and /v1/completions,
with the official ``openai`` client against the real server on a loopback port: choice i equals
a separate single request with seed + i."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings

import openai
import pytest

from tests._live_server import LiveServer, openai_client

MESSAGES = [{"role": "user", "content": "Name a colour."}]
PROMPT = "My favourite colour is"
SEED = 21


@pytest.fixture(scope="module")
def live():
    with LiveServer(ServerSettings(max_tokens_limit=64, ui_dir=None)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return openai_client(live, timeout=180)


def chat(client, **kw):
    args = {"model": "x", "messages": MESSAGES, "max_tokens": 8, "temperature": 1.2, **kw}
    return client.chat.completions.create(**args)


def complete(client, **kw):
    return client.completions.create(**{"model": "x", "prompt": PROMPT, "max_tokens": 8, **kw})


def test_chat_n3_choices_equal_single_requests_with_seeds_s_to_s_plus_2(client):
    r = chat(client, n=3, seed=SEED, logprobs=True, top_logprobs=1)
    assert [c.index for c in r.choices] == [0, 1, 2]
    singles = [chat(client, seed=SEED + i, logprobs=True, top_logprobs=1) for i in range(3)]
    for choice, single in zip(r.choices, singles, strict=True):
        assert choice.message.content == single.choices[0].message.content
        assert choice.finish_reason == single.choices[0].finish_reason
        assert [e.token for e in choice.logprobs.content] == [
            e.token for e in single.choices[0].logprobs.content
        ]
    assert r.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)
    assert r.usage.prompt_tokens == singles[0].usage.prompt_tokens
    assert len({c.message.content for c in r.choices}) > 1  # different seeds, different texts


def test_completions_n3_choices_equal_single_requests_with_their_seeds(client):
    r = complete(client, n=3, seed=SEED, logprobs=1, extra_body={"entropix": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert "entropix" not in (r.model_extra or {})  # with n > 1 it sits in each choice
    singles = [complete(client, seed=SEED + i, logprobs=1) for i in range(3)]
    for i, (choice, single) in enumerate(zip(r.choices, singles, strict=True)):
        assert choice.text == single.choices[0].text
        assert choice.finish_reason == single.choices[0].finish_reason
        assert choice.logprobs.tokens == single.choices[0].logprobs.tokens
        assert choice.logprobs.text_offset == single.choices[0].logprobs.text_offset
        extension = choice.model_extra["entropix"]
        assert extension["summary"]["seed"] == SEED + i
        assert len(extension["tokens"]) == single.usage.completion_tokens
    assert r.usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)


def _by_index(chunks, text_of):
    texts: dict[int, str] = {}
    finishes: dict[int, list] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        assert len(chunk.choices) == 1
        c = chunk.choices[0]
        texts[c.index] = texts.get(c.index, "") + text_of(c)
        finishes.setdefault(c.index, []).append(c.finish_reason)
    for reasons in finishes.values():  # each choice ends with its own finish_reason
        assert reasons[-1] in ("stop", "length") and set(reasons[:-1]) <= {None}
    return texts


def test_chat_streaming_n2_carries_both_indexes_and_reassembles(client):
    chunks = list(chat(client, n=2, seed=SEED, stream=True, stream_options={"include_usage": True}))
    texts = _by_index(chunks, lambda c: c.delta.content or "")
    assert sorted(texts) == [0, 1]
    starts = [c for c in chunks if c.choices and c.choices[0].delta.role == "assistant"]
    assert sorted(c.choices[0].index for c in starts) == [0, 1]  # the role once per choice
    singles = [chat(client, seed=SEED + i) for i in range(2)]
    assert [texts[i] for i in range(2)] == [s.choices[0].message.content for s in singles]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == sum(s.usage.completion_tokens for s in singles)


def test_completions_streaming_n2_carries_both_indexes_and_reassembles(client):
    chunks = list(complete(client, n=2, seed=SEED, stream=True, logprobs=1))
    texts = _by_index(chunks, lambda c: c.text)
    offsets = {0: [], 1: []}  # each choice's own text_offset
    for chunk in chunks:
        offsets[chunk.choices[0].index] += chunk.choices[0].logprobs.text_offset
    singles = [complete(client, seed=SEED + i, logprobs=1) for i in range(2)]
    assert [texts[i] for i in range(2)] == [s.choices[0].text for s in singles]
    assert [offsets[i] for i in range(2)] == [s.choices[0].logprobs.text_offset for s in singles]


def test_temperature_zero_gives_identical_choices(client):
    r = chat(client, n=3, temperature=0)
    assert len(r.choices) == 3 and len({c.message.content for c in r.choices}) == 1
    assert r.choices[0].message.content == chat(client, temperature=0).choices[0].message.content
    r = complete(client, n=2, temperature=0)
    assert len(r.choices) == 2 and r.choices[0].text == r.choices[1].text


def test_without_a_seed_choices_use_one_random_base_seed(client):
    r = complete(client, n=2, max_tokens=2, extra_body={"entropix": True})
    seeds = [c.model_extra["entropix"]["summary"]["seed"] for c in r.choices]
    assert seeds[1] == seeds[0] + 1


@pytest.mark.parametrize("n", [0, 9])
def test_n_outside_1_to_8_is_a_400(client, n):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, n=n)
    assert "n:" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        complete(client, n=n)
    assert "n:" in info.value.body["message"]


def test_fork_sampler_gives_n_equal_choices(client):
    r = chat(client, n=2, max_tokens=4, extra_body={"sampler": "fork"})
    assert len(r.choices) == 2 and r.choices[0].message.content == r.choices[1].message.content
    single = chat(client, max_tokens=4, extra_body={"sampler": "fork"})
    assert r.choices[0].message.content == single.choices[0].message.content
    assert r.usage.completion_tokens == 2 * single.usage.completion_tokens
