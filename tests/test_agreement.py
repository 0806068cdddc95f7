"""Sampled agreement as a confidence feature (engine/agreement.py): the agreement of
constructed rows, the map it switches to, the hidden rows' events kept from the caller, and
k = 0 leaving today's confidence as it was. The engine tests use the embedded model."""

from __future__ import annotations

from types import SimpleNamespace

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.agreement import (
    agreement,
    answer_complete,
    answer_of,
    hidden_seeds,
    samples_for,
    with_agreement,
)
from mlx_entropix.engine.confidence import (
    AGREEMENT_FEATURE,
    ConfidenceModel,
    LogisticMap,
    TokenSignal,
    score,
    shipped_model,
)
from mlx_entropix.engine.generate import generate, generate_rows
from mlx_entropix.errors import InvalidRequestError
from mlx_entropix.events import DoneEvent, TokenEvent
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer, openai_client, read_sse

RAW = "2 + 3 = 5\n4 + 1 = 5\n6 + 2 ="


def test_agreement_of_constructed_rows():
    rows = [" 11\n12", "11.", " 12\n", ""]  # 11 twice (a sentence end ends it too), 12, none
    assert agreement(" 11\n", rows) == 0.5
    assert agreement(" 12", rows) == 0.25
    assert agreement(" 7", rows) == 0.0
    assert agreement("", ["", ""]) == 0.0  # no answer agrees with nothing
    assert agreement(" 11", []) is None
    # an equation gives its right-hand side, as the span reader does without a kind
    assert answer_of("7 + 7 = 14\nQ:") == "14"
    assert agreement("7 + 7 = 14", [" 14\n", "3 + 11 = 14.", "7 + 7 = 15"]) == pytest.approx(2 / 3)
    assert answer_of(" Paris.") == answer_of("paris") == "paris"


def test_answer_complete_needs_a_boundary_after_the_answer():
    assert not answer_complete("")
    assert not answer_complete(" 11")
    assert not answer_complete(" 3.")  # may go on to "3.5"
    assert answer_complete(" 3.5\n")
    assert answer_complete(" Paris. The")
    assert not answer_complete("\n")  # no answer yet


def test_samples_for_defaults_and_limits():
    assert samples_for(None, "raw", ["greedy"]) == 0  # off unless asked (README: cost vs gain)
    assert samples_for(None, "chat", ["greedy"]) == 0
    assert samples_for(2, "chat", ["greedy", "normal"]) == 2
    assert samples_for(4, "raw", ["fork"]) == 0  # a fork's branches are its batch
    with pytest.raises(ValueError):
        samples_for(-1, "raw", ["greedy"])
    with pytest.raises(ValueError):
        samples_for(17, "raw", ["greedy"])
    seeds = hidden_seeds(5, 4)
    assert len(set(seeds)) == 4 and 5 not in seeds


def _logistic(feature: str, coef: float, intercept: float) -> LogisticMap:
    return LogisticMap((feature,), (0.0,), (1.0,), (coef,), intercept)


MODEL = ConfidenceModel(
    {
        "chat": _logistic("mean_logprob", 1.0, 0.0),
        "raw": _logistic("mean_logprob", 1.0, 1.0),
        "raw+agreement": _logistic(AGREEMENT_FEATURE, 4.0, -2.0),
    },
    {},
)
SIGNALS = [TokenSignal(3, -0.5, (-0.5, -1.5), (1.0, 0.5, None, None, None, None)),
           TokenSignal(4, -0.1, (-0.1, -3.0), (0.2, 0.1, None, None, None, None))]  # fmt: skip


def test_the_map_switches_with_the_agreement():
    plain = score(" 11\n", SIGNALS, MODEL, "raw")
    assert AGREEMENT_FEATURE not in plain.features
    assert plain == score(" 11\n", SIGNALS, MODEL, "raw", agreement=None)  # k = 0: as today
    sure = score(" 11\n", SIGNALS, MODEL, "raw", agreement=1.0).confidence
    unsure = score(" 11\n", SIGNALS, MODEL, "raw", agreement=0.0).confidence
    assert sure == pytest.approx(1 / (1 + 2.718281828459045**-2), abs=1e-6)  # raw+agreement
    assert unsure == pytest.approx(1 / (1 + 2.718281828459045**2), abs=1e-6)
    assert plain.confidence not in (sure, unsure)
    # a format without a map that takes it keeps its own map, the feature notwithstanding
    chat = score(" 11\n", SIGNALS, MODEL, "chat")
    assert score(" 11\n", SIGNALS, MODEL, "chat", agreement=1.0).confidence == chat.confidence
    assert MODEL.map_for("raw") is MODEL.maps["raw"]
    assert MODEL.map_for("raw", agreement=True) is MODEL.maps["raw+agreement"]
    assert MODEL.map_for("chat", agreement=True) is MODEL.maps["chat"]


def _done(text: str, mode: str = "greedy") -> DoneEvent:
    zero = dict(ttft_s=0.0, total_s=0.0, prefill_tok_s=0.0, decode_tok_s=0.0)
    return DoneEvent(mode=mode, text=text, finish_reason="stop", prompt_tokens=3,
                     generated_tokens=2, state_counts={}, action_counts={}, confidence=0.5,
                     **zero)  # fmt: skip


def test_hidden_rows_never_leave_and_the_done_event_is_scored_again():
    token = TokenEvent.model_construct(type="token", mode="greedy", text=" 11")
    hidden = TokenEvent.model_construct(type="token", mode="normal", text=" 12")
    items = [None, (0, token), (1, hidden), (2, hidden), (0, _done(" 11\n")), (1, _done(" 11\n")),
             (2, _done(" 12\n"))]  # fmt: skip
    streams = [
        SimpleNamespace(text=t, signals=SIGNALS, prompt=None) for t in (" 11\n", " 11\n", " 12\n")
    ]
    out = list(with_agreement(iter(items), streams, 1, MODEL, "raw"))
    assert out[:2] == [None, (0, token)]  # the user row's events, in order; none of rows 1, 2
    assert len(out) == 3 and out[2][0] == 0
    done = out[2][1]
    assert done.agreement == 0.5 and done.confidence_samples == 2
    assert done.confidence == score(" 11\n", SIGNALS, MODEL, "raw", agreement=0.5).confidence
    assert done.answer_span == [1, 3]


def _signals(events):
    out, end = [], 0
    for e in events:
        if e.type == "token":
            end += len(e.text)
            top2 = (e.top[0].logprob, e.top[1].logprob)
            out.append(TokenSignal(end, e.logprob, top2, tuple(e.metrics.model_dump().values())))
    return out


def test_engine_hidden_rows(embedded):
    ids = embedded.tokenizer.encode(RAW)
    run = dict(mode="greedy", max_tokens=6, top_logprobs=2, stop=["\n"], seed=3)
    plain = list(generate(embedded, ids, confidence_samples=0, **run))
    sampled = list(generate(embedded, ids, confidence_samples=4, **run))
    model = shipped_model(embedded.info.name)
    # k = 0: today's confidence, from the events alone, no agreement
    d0 = plain[-1]
    assert d0.agreement is None and d0.confidence_samples == 0
    assert d0.confidence == score(d0.text, _signals(plain), model, "raw").confidence
    # k = 4: only the user's row comes out (one done event, its tokens make its text) ...
    assert all(e.mode == "greedy" for e in sampled)
    assert [e.type for e in sampled].count("done") == 1 and sampled[-1].type == "done"
    d4 = sampled[-1]
    assert "".join(e.text for e in sampled if e.type == "token") == d4.text
    assert d4.text == d0.text  # the hidden rows do not change the user's row
    assert d4.confidence_samples == 4 and d4.agreement in (0.0, 0.25, 0.5, 0.75, 1.0)
    # ... scored with the agreement (and the map that takes it, where one is shipped)
    want = score(d4.text, _signals(sampled), model, "raw", agreement=d4.agreement)
    assert d4.confidence == want.confidence and d4.answer_span == list(want.span)
    # no raw map takes the agreement: the raw map of k = 0 scores it
    assert model.map_for("raw", agreement=True) is model.maps["raw"]
    # by default, no hidden rows
    assert list(generate(embedded, ids, **run))[-1].confidence_samples == 0


def test_engine_chat_without_a_shipped_agreement_map_keeps_its_map(embedded):
    """The agreement is reported; where no map takes it (none ships for chat since its map
    took the attention's features: see README), the format's own map scores the answer."""
    model = shipped_model(embedded.info.name)
    assert model.map_for("chat", agreement=True) is model.maps["chat"]
    run = dict(mode="greedy", max_tokens=12, top_logprobs=2, seed=1)
    question = "What is the capital of France? Answer with the city name only."
    plain = list(generate(embedded, question, **run))
    sampled = list(generate(embedded, question, confidence_samples=2, **run))
    d0, d2 = plain[-1], sampled[-1]
    assert d0.confidence_samples == 0 and d0.agreement is None  # the default: k = 0
    assert d0.confidence == score(d0.text, _signals(plain), model, "chat").confidence
    assert d2.text == d0.text and d2.confidence_samples == 2 and d2.agreement is not None
    want = score(d2.text, _signals(sampled), model, "chat", agreement=d2.agreement)
    assert want.features[AGREEMENT_FEATURE] == d2.agreement
    assert d2.confidence == want.confidence == round(model.maps["chat"](want.features), 6)


def test_engine_rows_share_the_hidden_rows_and_bad_k_is_refused(embedded):
    ids = embedded.tokenizer.encode(RAW)
    items = [i for i in generate_rows(embedded, ids, modes=["greedy", "normal"], seeds=[1, 2],
                                      max_tokens=4, stop=["\n"], confidence_samples=3)]  # fmt: skip
    assert {r for r, _ in items} == {0, 1}  # rows 2-4 are hidden
    dones = [e for _, e in items if e.type == "done"]
    assert len(dones) == 2 and all(d.confidence_samples == 3 for d in dones)
    with pytest.raises(InvalidRequestError):
        list(generate_rows(embedded, ids, modes=["greedy"], confidence_samples=99))


def test_served_confidence_samples(embedded):
    """/api/generate's field and the OpenAI extension: the done event / summary carries the
    agreement and k, the text is the one without hidden rows, no hidden row's text is sent."""
    question = "What is the capital of France? Answer with the city name only."
    with LiveServer(ServerSettings(max_tokens_limit=64, ui_dir=None)) as live:
        with httpx.Client(base_url=live.url, timeout=120) as client:
            body = {"prompt": question, "mode": "greedy", "max_tokens": 8, "seed": 1}
            dones = []
            for k in (0, 2):
                with client.stream("POST", "/api/generate",
                                   json=body | {"confidence_samples": k}) as r:  # fmt: skip
                    assert r.status_code == 200
                    sse = read_sse(r)
                    dones.append(sse.json("done"))
                    tokens = sse.json("token")
            assert len(dones[1]) == 1 and {t["mode"] for t in tokens} == {"greedy"}
            d0, d2 = dones[0][0], dones[1][0]
            assert d0["confidence_samples"] == 0 and d0["agreement"] is None
            assert d2["confidence_samples"] == 2 and d2["agreement"] is not None
            assert d2["text"] == d0["text"] == "".join(t["text"] for t in tokens)
            bad = client.post("/api/generate", json=body | {"confidence_samples": 99})
            assert bad.status_code in (400, 422) and "confidence_samples" in bad.text
        oa = openai_client(live)
        r = oa.chat.completions.create(model="x", messages=[{"role": "user", "content": question}],
                                       max_tokens=8, temperature=0,
                                       extra_body={"confidence_samples": 2})  # fmt: skip
        summary = r.model_extra["entropix"]["summary"]
        assert summary["confidence_samples"] == 2 and summary["agreement"] is not None
        assert len(r.choices) == 1 and r.choices[0].message.content == d0["text"]


def test_evaluation_takes_the_agreement(embedded):
    """``eval.py --confidence-samples k``: the record's features carry it and its confidence
    is the shipped map's with it; by default (0) neither."""
    from mlx_entropix.eval.harness import Item, engine_generate_fn

    item = Item(0, "What is the capital of France? Answer with the city name only.", "Paris",
                "contains", "capital", "chat")  # fmt: skip
    plain = engine_generate_fn(embedded, max_tokens=8)(item, "greedy", 1)
    sampled = engine_generate_fn(embedded, max_tokens=8, confidence_samples=2)(item, "greedy", 1)
    assert AGREEMENT_FEATURE not in plain.features
    a = sampled.features[AGREEMENT_FEATURE]
    assert a in (0.0, 0.5, 1.0) and sampled.text == plain.text
    model = shipped_model(embedded.info.name)
    assert sampled.confidence == round(model(sampled.features, "chat"), 6)
    assert sampled.confidence == plain.confidence  # no chat map takes it: it changes nothing
