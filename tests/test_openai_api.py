"""The official ``openai`` client, unchanged, against the real server on a loopback port."""

from __future__ import annotations

import json

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate
from mlx_entropix.server import ServerSettings

import httpx
import openai
import pytest

from tests._live_server import LiveServer, openai_client, read_sse

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def live():
    with LiveServer(ServerSettings(max_tokens_limit=256, ui_dir=None)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return openai_client(live)


def engine_text(lm, mode, seed, max_tokens, **kw):
    events = list(generate(lm, MESSAGES, mode=mode, seed=seed, max_tokens=max_tokens, **kw))
    return [e.id for e in events[:-1]], events[-1]


def test_models(client, live):
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == live.worker.resource.model_id


def test_models_retrieve(client, live):
    """The client's ``models.retrieve`` (was a 404 for the served model too)."""
    served = live.worker.resource.model_id
    assert client.models.retrieve(served).id == served
    with pytest.raises(openai.NotFoundError) as err:
        client.models.retrieve("no-such/model")
    assert err.value.body["code"] == "model_not_found" and served in err.value.body["message"]


def test_non_streaming_with_logprobs(client, embedded):
    r = client.chat.completions.create(
        model="anything",
        messages=MESSAGES,
        max_tokens=10,
        seed=4,
        temperature=0.7,
        logprobs=True,
        top_logprobs=3,
    )
    choice = r.choices[0]
    config = embedded.default_config.merged({"temperature": 0.7})
    ids, done = engine_text(embedded, "normal", 4, 10, config=config)
    assert choice.message.role == "assistant" and choice.message.content == done.text
    assert choice.finish_reason in ("stop", "length")
    content = choice.logprobs.content
    assert len(content) == len(ids) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
    assert b"".join(bytes(e.bytes) for e in content).decode() == done.text
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_logprobs_in_every_chunk_and_usage(client, embedded):
    stream = client.chat.completions.create(
        model="x",
        messages=MESSAGES,
        max_tokens=8,
        seed=9,
        stream=True,
        logprobs=True,
        top_logprobs=2,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert usage_chunk.choices == [] and usage_chunk.usage.completion_tokens == len(content_chunks)
    assert content_chunks[0].choices[0].delta.role == "assistant"
    for chunk in content_chunks:
        assert chunk.object == "chat.completion.chunk"
        lp = chunk.choices[0].logprobs.content
        assert len(lp) == 1 and len(lp[0].top_logprobs) == 2 and lp[0].bytes
    finishes = [c.choices[0].finish_reason for c in content_chunks]
    assert finishes[-1] in ("stop", "length") and set(finishes[:-1]) <= {None}
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    _, done = engine_text(embedded, "normal", 9, 8)
    assert text == done.text


def test_entropix_extension_adds_metrics_to_each_chunk(client, embedded):
    stream = client.chat.completions.create(
        model="x",
        messages=MESSAGES,
        max_tokens=8,
        seed=2,
        stream=True,
        extra_body={"entropix": True},
    )
    chunks = list(stream)
    assert all(c.system_fingerprint.endswith("entropix") for c in chunks)
    extras = [c.model_extra["entropix"] for c in chunks]
    assert all(
        e["state"] and "entropy" in e["metrics"] and "temperature" in e["params"] for e in extras
    )
    assert "state_counts" in extras[-1]["summary"]
    assert all(c.choices[0].logprobs is None for c in chunks)  # logprobs only when asked
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    _, done = engine_text(embedded, "entropix", 2, 8)
    assert text == done.text
    # Non-streaming: the per-token metrics as a list.
    r = client.chat.completions.create(
        model="x", messages=MESSAGES, max_tokens=4, seed=2, extra_body={"sampler": "entropix"}
    )
    assert len(r.model_extra["entropix"]["tokens"]) == r.usage.completion_tokens


def test_temperature_zero_is_greedy_and_stop(client, embedded):
    r = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=8, temperature=0)
    _, done = engine_text(embedded, "greedy", None, 8)
    assert r.choices[0].message.content == done.text
    assert r.system_fingerprint.endswith("greedy")
    r = client.chat.completions.create(
        model="x", messages=MESSAGES, max_tokens=12, temperature=0, stop=[" Paris"]
    )
    _, done = engine_text(embedded, "greedy", None, 12, stop=[" Paris"])
    assert r.choices[0].message.content == done.text
    if done.finish_reason == "stop_string":
        assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("knob", ["temperature", "top_p"])
def test_a_zero_knob_with_a_named_sampler_is_its_argmax(client, embedded, knob):
    """temperature 0 (or top_p 0) with the sampler named: normal sampling keeping only the top
    token, so greedy's tokens (the 0 was dropped as unset: it sampled at the default T 0.666)."""
    r = client.chat.completions.create(model="x", messages=MESSAGES, max_tokens=12, seed=1,
                                       extra_body={"sampler": "normal"}, **{knob: 0})  # fmt: skip
    ids, _ = engine_text(embedded, "greedy", None, 12)
    params = [e["params"][knob] for e in r.model_extra["entropix"]["tokens"]]
    assert params == [0.0] * len(ids)
    assert r.system_fingerprint.endswith("normal")
    assert r.choices[0].message.content == embedded.tokenizer.decode(ids)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1000}, "limit"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"top_logprobs": 3}, "'top_logprobs' needs 'logprobs': true"),
        ({"n": 9}, "n"),
        ({"extra_body": {"sampler": "creative"}}, "sampler"),
        ({"extra_body": {"tools_please": 1}}, "tools_please"),
        ({"extra_body": {"preset": "loud"}}, "unknown preset 'loud'"),
        ({"messages": [{"role": "user", "content": "hi " * 9000}]}, "context"),
    ],
)
def test_bad_requests_raise_bad_request_error(client, kwargs, needle):
    args = {"model": "x", "messages": MESSAGES, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**args)
    message = info.value.body["message"]
    assert needle in message and "Traceback" not in message


def test_raw_stream_shape(live):
    """The wire format itself: data-only events, [DONE] last, pings are comments."""
    body = {"messages": MESSAGES, "max_tokens": 3, "stream": True, "logprobs": True}
    with httpx.Client(base_url=live.url, timeout=60) as c:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            sse = read_sse(r)
    assert {name for name, _ in sse.events} == {"message"}
    assert sse.events[-1][1] == "[DONE]"
    chunks = [json.loads(d) for _, d in sse.events[:-1]]
    assert all(c["choices"][0]["logprobs"]["content"] for c in chunks)
    with httpx.Client(base_url=live.url, timeout=60) as c:
        r = c.post(
            "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
        )
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("sign", [1, -1])
def test_extreme_sampler_coefficients_are_bounded_not_500(live, sign):
    """Unbounded SamplerConfig floats: the request may set +-1e6 (served) but not 1e308 (400)."""
    from mlx_entropix.config import SamplerConfig
    from mlx_entropix.server.schemas import COEF_BOUND

    free = [
        k for k, f in SamplerConfig.model_fields.items() if f.annotation is float and not f.metadata
    ]
    body = {"messages": MESSAGES, "max_tokens": 3, "sampler": "entropix"}
    with httpx.Client(base_url=live.url, timeout=120) as c:
        r = c.post(
            "/v1/chat/completions",
            json={**body, "sampler_config": {k: sign * COEF_BOUND for k in free}},
        )
        assert r.status_code == 200, r.text
        r = c.post("/v1/chat/completions", json={**body, "sampler_config": {free[0]: sign * 1e308}})
        assert r.status_code == 400 and free[0] in r.json()["error"]["message"]


def test_fork_sampler_streams_text_and_skips_fork_events(client, embedded):
    stream = client.chat.completions.create(
        model="x",
        messages=MESSAGES,
        max_tokens=6,
        stream=True,
        # Fork at the first token, so this prompt surely forks (the shipped policy forks at
        # 'exploring' tokens, which this short answer may not have).
        extra_body={"sampler": "fork", "sampler_config": {"fork_trigger": "first"}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    first = embedded.default_config.merged({"fork_trigger": "first"})
    done = list(generate(embedded, MESSAGES, mode="fork", config=first, max_tokens=6))[-1]
    assert done.forks == 1 and text == done.text
