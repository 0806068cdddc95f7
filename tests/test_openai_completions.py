"""``POST /v1/completions`` (OpenAI's legacy text completion) with the official ``openai`` client,
unchanged, against the real server on a loopback port; compared with the engine in-process."""

from __future__ import annotations

import json

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate
from mlx_entropix.server import ServerSettings

import httpx
import openai
import pytest

from tests._live_server import LiveServer, openai_client, read_sse

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def live():
    with LiveServer(ServerSettings(max_tokens_limit=64, ui_dir=None)) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    return openai_client(live)


def engine_run(lm, prompt_ids, mode, seed, max_tokens, **kw):
    events = list(generate(lm, prompt_ids, mode=mode, seed=seed, max_tokens=max_tokens, **kw))
    return [e for e in events[:-1]], events[-1]


def raw_ids(lm, text):
    """The prompt as the server tokenizes it: raw text, no chat template."""
    return lm.tokenizer.encode(text, add_special_tokens=True)


def points_at_tokens(text: str, tokens: list[str], offsets: list[int]) -> bool:
    """text_offset: where each token's text starts in the returned text (non-decreasing; a
    token cut by a stop string may lie past the end)."""
    inside = [(t, o) for t, o in zip(tokens, offsets, strict=True) if o + len(t) <= len(text)]
    return offsets == sorted(offsets) and all(text.startswith(t, o) for t, o in inside)


def test_non_streaming_default_is_entropix_with_legacy_logprobs(client, embedded):
    r = client.completions.create(model="x", prompt=PROMPT, max_tokens=8, seed=5, logprobs=3)
    tokens, done = engine_run(embedded, raw_ids(embedded, PROMPT), "entropix", 5, 8)
    choice = r.choices[0]
    assert r.object == "text_completion" and r.system_fingerprint.endswith("-entropix")
    assert choice.text == done.text and choice.index == 0
    assert choice.finish_reason == ("length" if done.finish_reason == "length" else "stop")
    lp = choice.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(tokens)
    assert lp.token_logprobs == pytest.approx([t.logprob for t in tokens], abs=1e-5)
    assert all(len(top) <= 3 and max(top.values()) <= 0 for top in lp.top_logprobs)
    assert points_at_tokens(choice.text, lp.tokens, lp.text_offset)
    assert r.usage.prompt_tokens == len(raw_ids(embedded, PROMPT))
    assert r.usage.completion_tokens == len(tokens)


def test_no_chat_template_is_applied(client, embedded):
    r = client.completions.create(prompt=PROMPT, max_tokens=1, temperature=0, model="x")
    chat_ids = embedded.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    assert r.usage.prompt_tokens == len(raw_ids(embedded, PROMPT)) < len(chat_ids)


def test_streaming_equals_engine_and_ends_with_usage(client, embedded):
    stream = client.completions.create(
        model="x",
        prompt=PROMPT,
        max_tokens=10,
        temperature=0.8,
        top_p=0.9,
        seed=11,
        stream=True,
        stream_options={"include_usage": True},
        logprobs=2,
        extra_body={"sampler": "normal"},
    )
    chunks = list(stream)
    config = embedded.default_config.merged({"temperature": 0.8, "top_p": 0.9})
    tokens, done = engine_run(embedded, raw_ids(embedded, PROMPT), "normal", 11, 10,
                              config=config)  # fmt: skip
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].text for c in content) == done.text
    assert len(content) == len(tokens)
    assert [c.choices[0].logprobs.text_offset[0] for c in content] == [
        sum(len(t.text) for t in tokens[:i]) for i in range(len(tokens))
    ]
    assert all(c.choices[0].finish_reason is None for c in content[:-1])
    assert content[-1].choices[0].finish_reason in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(tokens)
    extra = [c.model_extra["entropix"] for c in content]
    assert [e["index"] for e in extra] == list(range(len(tokens)))
    assert extra[-1]["summary"]["seed"] == 11


def test_token_id_prompt_stop_and_greedy(client, embedded):
    ids = raw_ids(embedded, "Count: one, two, three,")
    tokens, done = engine_run(embedded, ids, "greedy", None, 12, stop=[" six"])
    r = client.completions.create(model="x", prompt=ids, max_tokens=12, temperature=0,
                                  stop=[" six"])  # fmt: skip
    assert r.choices[0].text == done.text and r.system_fingerprint.endswith("-greedy")
    assert " six" not in r.choices[0].text


@pytest.mark.parametrize("entropix", [None, False, True])
def test_raw_stream_shape(live, entropix):
    """Metrics only when the extension is asked for: ``entropix: false`` (normal sampling) is
    not asking, as in chat."""
    body = {"prompt": PROMPT, "max_tokens": 3, "stream": True, "seed": 1}
    body |= {} if entropix is None else {"entropix": entropix}
    with httpx.Client(base_url=live.url, timeout=60) as c:
        with c.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            sse = read_sse(r)
    data = [d for _, d in sse.events]
    assert data[-1] == "[DONE]"
    first = json.loads(data[0])
    assert first["object"] == "text_completion" and first["id"].startswith("cmpl-")
    assert set(first["choices"][0]) == {"text", "index", "logprobs", "finish_reason"}
    assert ("entropix" in first) == bool(entropix)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"echo": True}, "echo"),
        ({"n": 9}, "n:"),
        ({"prompt": ["a", "b"]}, "one prompt per request"),
        ({"prompt": ""}, "empty"),
        ({"prompt": [10**9]}, "token ids must lie in"),
        # Found by use: true/false and 1.0 were completed as the ids 1, 0 and 1
        ({"prompt": [True, False]}, "token ids must be integers"),
        ({"prompt": [[1.0, 2.0]]}, "token ids must be integers"),
        ({"logprobs": 21}, "logprobs"),
        ({"max_tokens": 65}, "over this server's limit"),
        ({"extra_body": {"sampler_config": {"temperature": -1}}}, "sampler_config.temperature"),
    ],
)
def test_bad_requests_raise_bad_request_error(client, kwargs, needle):
    args = {"model": "x", "prompt": PROMPT, "max_tokens": 2, **kwargs}
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(**args)
    assert needle in str(info.value)


def test_default_max_tokens_is_16_and_within_the_servers_cap(live):
    """A request without max_tokens (or with null) gets OpenAI's 16, or the server's cap if
    lower: null gave the chat default (256, up to the cap) and, under a cap below 16, no
    max_tokens at all was a 400 "max_tokens 16 is over this server's limit"."""
    body = {"prompt": "Once upon a time", "temperature": 0}
    with httpx.Client(base_url=live.url, timeout=60) as c:
        r = c.post("/v1/completions", json=body | {"max_tokens": None})
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 16
        limit, live.settings.max_tokens_limit = live.settings.max_tokens_limit, 3
        try:
            r = c.post("/v1/completions", json=body)
        finally:
            live.settings.max_tokens_limit = limit
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("stream", [False, True])
def test_text_offset_after_a_held_back_token(live, stream):
    """Greedy " 4, 5" with the stop string " 5": the " " before "4" is held (it may start the
    stop) and comes out with "4"; "4" was given the offset of that space (0, not 1)."""
    body = {"prompt": "1, 2, 3,", "max_tokens": 8, "temperature": 0, "stop": [" 5"],
            "logprobs": 1, "stream": stream}  # fmt: skip
    with httpx.Client(base_url=live.url, timeout=60) as c:
        if stream:
            with c.stream("POST", "/v1/completions", json=body) as r:
                chunks = [json.loads(d) for _, d in read_sse(r).events if d != "[DONE]"]
        else:
            chunks = [c.post("/v1/completions", json=body).json()]
    choices = [chunk["choices"][0] for chunk in chunks]
    text = "".join(ch["text"] for ch in choices)
    tokens = [t for ch in choices for t in ch["logprobs"]["tokens"]]
    offsets = [o for ch in choices for o in ch["logprobs"]["text_offset"]]
    assert text == " 4," and tokens[:3] == [" ", "4", ","]
    assert offsets[:3] == [0, 1, 2] and points_at_tokens(text, tokens, offsets)
