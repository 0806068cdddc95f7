"""The answer confidence where the user looks: the done event (engine, shared batch), the CLI
summary and --min-confidence, the SSE API and both OpenAI APIs with min_confidence (an
abstention is marked and the text is still returned). The embedded model, its shipped map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.confidence import TokenSignal, score, shipped_model
from mlx_entropix.engine.generate import generate
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer, openai_client, read_sse

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What is the capital of France? Answer with the city name only."


@pytest.fixture(scope="module")
def live():
    with LiveServer(ServerSettings(max_tokens_limit=64, ui_dir=None)) as server:
        yield server


def rescored(events, fmt, prompt=None):
    """The confidence recomputed from the token events alone (as the evaluation does)."""
    signals, end = [], 0
    for e in events[:-1]:
        end += len(e.text)
        top2 = (e.top[0].logprob, e.top[1].logprob)
        signals.append(TokenSignal(end, e.logprob, top2, tuple(e.metrics.model_dump().values())))
    model = shipped_model("SmolLM2-135M-Instruct")
    return score(events[-1].text, signals, model, fmt, prompt=prompt)


@pytest.mark.parametrize("raw", [False, True])
def test_done_event_carries_the_answer_confidence(embedded, raw):
    text = "2 + 3 = 5\n4 + 1 ="
    prompt = embedded.tokenizer.encode(text) if raw else QUESTION
    events = list(generate(embedded, prompt, mode="greedy", max_tokens=12, top_logprobs=2,
                           stop=["\n"] if raw else ()))  # fmt: skip
    done = events[-1]
    assert done.type == "done" and done.confidence is not None and 0 < done.confidence < 1
    want = rescored(events, "raw" if raw else "chat", text if raw else None)
    assert done.confidence == want.confidence and done.answer_span == list(want.span)
    assert done.text[slice(*done.answer_span)].strip()  # the span holds the answer's text
    assert not done.abstained


def test_a_raw_answer_copied_from_its_question_gets_the_check_cap(embedded):
    """The engine reads a raw prompt's solved examples: "2 x 2 =" answered " 2" (the embedded
    model's greedy answer) copies its question where no example does: capped."""
    text = "3 x 2 = 6\n2 x 4 = 8\n3 x 2 = 6\n3 x 2 = 6\n2 x 2 ="
    events = list(generate(embedded, embedded.tokenizer.encode(text), mode="greedy",
                           max_tokens=4, top_logprobs=2, stop=["\n"]))  # fmt: skip
    done, cap = events[-1], shipped_model("SmolLM2-135M-Instruct").failed_check["raw"]
    assert done.text.strip() == "2" and done.confidence == cap
    assert done.confidence == rescored(events, "raw", text).confidence
    assert rescored(events, "raw").confidence > cap  # without the prompt: not capped


def test_a_chat_answer_that_repeats_its_question_is_capped(embedded):
    """A chat question is its last user turn: "after 80" answered "80" is a copy (the embedded
    model's greedy answer); the cap is the map's."""
    question = "What number comes after 80? Answer with the number only."
    events = list(generate(embedded, question, mode="greedy", max_tokens=16, top_logprobs=2))
    done, cap = events[-1], shipped_model("SmolLM2-135M-Instruct").failed_check["chat"]
    assert done.text.startswith("The number after 80 is 80") and done.confidence == cap
    assert rescored(events, "chat").confidence > cap  # without the question: not capped


def test_cli_summary_and_min_confidence():
    def cli(*args: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, str(ROOT / "mlx_main.py"), "--input", QUESTION, "--greedy"]
        return subprocess.run([*argv, "--max-tokens", "8", *args], capture_output=True,
                              text=True, timeout=300, cwd=ROOT)  # fmt: skip

    out = cli("--min-confidence", "1", "--color", "never")
    assert out.returncode == 0, out.stderr
    assert "confidence" in out.stdout and "ABSTAINED" in out.stdout
    done = json.loads(cli("--min-confidence", "1", "--json").stdout.splitlines()[-1])
    assert done["type"] == "done" and done["abstained"] and done["text"].strip()
    assert done["confidence"] < 1
    done = json.loads(cli("--min-confidence", "0", "--json").stdout.splitlines()[-1])
    assert not done["abstained"]
    bad = cli("--min-confidence", "1.5")
    assert bad.returncode == 2 and "--min-confidence" in bad.stderr


def test_sse_api_marks_an_abstention_and_keeps_the_text(live, embedded):
    reference = list(generate(embedded, QUESTION, mode="greedy", max_tokens=8))[-1]
    with httpx.Client(base_url=live.url, timeout=120) as client:
        for threshold, abstained in ((1.0, True), (0.0, False)):
            body = {"prompt": QUESTION, "mode": "greedy", "max_tokens": 8,
                    "min_confidence": threshold}  # fmt: skip
            with client.stream("POST", "/api/generate", json=body) as r:
                assert r.status_code == 200
                done = read_sse(r).json("done")[0]
            assert done["abstained"] is abstained
            assert done["text"] == reference.text and done["confidence"] == reference.confidence
        bad = client.post("/api/generate", json={"prompt": "x", "min_confidence": 2})
        assert bad.status_code in (400, 422) and "min_confidence" in bad.text


def test_openai_chat_and_completions_mark_an_abstention(live):
    client = openai_client(live)
    messages = [{"role": "user", "content": QUESTION}]
    strict = {"min_confidence": 1.0}
    r = client.chat.completions.create(model="x", messages=messages, max_tokens=8,
                                       temperature=0, extra_body=strict)  # fmt: skip
    summary = r.model_extra["entropix"]["summary"]
    assert r.choices[0].message.content and summary["abstained"] is True
    assert 0 < summary["confidence"] < 1 and len(summary["answer_span"]) == 2
    chunks = list(client.chat.completions.create(model="x", messages=messages, max_tokens=8,
                  temperature=0, stream=True, extra_body={"min_confidence": 0.0}))  # fmt: skip
    last = [c for c in chunks if (c.model_extra or {}).get("entropix", {}).get("summary")][-1]
    assert last.model_extra["entropix"]["summary"]["abstained"] is False
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == r.choices[0].message.content
    plain = client.chat.completions.create(model="x", messages=messages, max_tokens=4)
    assert "entropix" not in (plain.model_extra or {})  # no extension asked: none sent

    legacy = client.completions.create(model="x", prompt="2 + 3 = 5\n4 + 1 =", max_tokens=4,
                                       temperature=0, extra_body=strict)  # fmt: skip
    summary = legacy.model_extra["entropix"]["summary"]
    assert legacy.choices[0].text and summary["abstained"] is True
