"""Interruptible prefill: ``should_stop`` is checked between the model's layers while a prompt is
prefilled, so a cancel or a time limit lands within one layer of one chunk, not after the whole
prompt; the checks do not change what is generated."""

from __future__ import annotations

import time

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine import batch, prefix_cache
from mlx_entropix.engine import generate as engine
from mlx_entropix.engine.generate import generate

import pytest

TEXT = "The quick brown fox jumps over the lazy dog. "
TIMES = {"elapsed_s", "ttft_s", "total_s", "prefill_tok_s", "decode_tok_s"}  # not compared


@pytest.fixture
def small_chunks(monkeypatch):
    """Several chunks from a short prompt, wherever a prefill chunks: the shared batch (a
    prompt over ``SHORT_PROMPT`` goes alone, in ``prefix_cache`` chunks)."""
    for module, name in ((engine, "PREFILL_CHUNK"), (prefix_cache, "BLOCK"),
                         (batch, "SHORT_PROMPT")):  # fmt: skip
        monkeypatch.setattr(module, name, 16)


def ids_of(events):
    return [e.id for e in events if e.type == "token"]


@pytest.mark.parametrize("mode", ["greedy", "entropix"])
def test_checks_between_layers_change_nothing(embedded, small_chunks, mode):
    prompt = embedded.tokenizer.encode(TEXT * 6)  # 60 tokens: 4 chunks
    calls = []
    checked = list(generate(embedded, prompt, mode=mode, seed=3, max_tokens=6,
                            should_stop=lambda: calls.append(1) and False))  # fmt: skip
    plain = list(generate(embedded, prompt, mode=mode, seed=3, max_tokens=6))
    assert ids_of(checked) == ids_of(plain) and len(ids_of(plain)) > 0
    layers = len(embedded.model.layers)
    # Per chunk: once before and once after each layer; then once per decoded token.
    assert len(calls) >= 4 * (layers + 1)


@pytest.mark.parametrize("after", [0, 1, 45])
def test_cancel_during_prefill_stops_within_a_layer(embedded, small_chunks, after):
    """should_stop turns true after `after` checks: no further layer runs, no token is made."""
    prompt = embedded.tokenizer.encode(TEXT * 6)
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > after

    events = list(generate(embedded, prompt, mode="greedy", max_tokens=8,
                           should_stop=should_stop))  # fmt: skip
    [done] = events
    assert done.type == "done" and done.finish_reason == "cancelled"
    assert done.generated_tokens == 0 and done.prompt_tokens == len(prompt)
    assert done.prefill_tok_s == 0.0  # it never ended (was prompt_tokens / 1e-9)
    assert len(calls) == after + 1  # stopped at the first true answer


def test_cancel_in_a_real_size_chunk_skips_the_rest(embedded):
    """Real-size chunks (1,024 tokens: several chunks): a cancel inside the first chunk runs no
    more layers and returns at once."""
    prompt = embedded.tokenizer.encode(TEXT * 120)[:1024]
    stamps: list[float] = []

    def should_stop() -> bool:
        stamps.append(time.perf_counter())
        return len(stamps) > 20  # true from the 21st check: inside the first chunk

    events = list(generate(embedded, prompt, mode="greedy", max_tokens=4,
                           should_stop=should_stop))  # fmt: skip
    returned = time.perf_counter()
    assert events[-1].finish_reason == "cancelled" and events[-1].generated_tokens == 0
    assert engine.PREFILL_CHUNK * 2 <= len(prompt)
    assert len(stamps) == 21  # the other chunks' layers never ran
    assert returned - stamps[-1] < 1.0  # nothing left to compute after the true answer


@pytest.mark.parametrize("mode", ["fork", "entropix"])
def test_a_prefill_in_steps_yields_between_layers_and_changes_nothing(embedded, small_chunks, mode):
    """``idle=True`` (the server's requests outside the shared batch): a None item after each
    layer of each chunk, then exactly the events of the plain run; a cancel between two of
    those items ends the request with no token."""
    prompt = embedded.tokenizer.encode(TEXT * 6)  # 60 tokens: 4 chunks
    items = list(engine.generate_rows(embedded, prompt, modes=[mode], seeds=[3], max_tokens=6,
                                      idle=True))  # fmt: skip
    plain = list(engine.generate_rows(embedded, prompt, modes=[mode], seeds=[3], max_tokens=6))
    layers = len(embedded.model.layers)
    first_event = next(i for i, x in enumerate(items) if x is not None)
    prefill = 4 * (layers + 1)  # before each layer and the head, per chunk
    # a fork's events come once its branches are decided: a None per step of theirs too
    assert first_event == prefill if mode != "fork" else first_event > prefill
    assert None not in items[first_event:]
    got = [(r, e.model_dump(exclude=TIMES)) for r, e in items[first_event:]]
    want = [(r, e.model_dump(exclude=TIMES)) for r, e in plain]
    assert got == want and any(e.type == "token" for _, e in plain)

    stop = []
    run = engine.generate_rows(embedded, prompt, modes=[mode], max_tokens=6, idle=True,
                               should_stop=lambda: bool(stop))  # fmt: skip
    assert [next(run) for _ in range(5)] == [None] * 5
    stop.append(1)
    [(_, done)] = list(run)
    assert done.type == "done" and done.finish_reason == "cancelled"
    assert done.generated_tokens == 0
