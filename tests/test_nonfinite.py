"""A model whose logits turn NaN/inf: that request ends with one clear error (the CLI: exit 1
and one line; the server: the stream's error event, /v1's error), the other requests of the
batch go on untouched, and so does the next request in its slots. A tiny random Llama whose
embedding of " zebra" is NaN: a prompt with that word poisons its row, the others are clean."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.generate import generate, prepare_prompt
from mlx_entropix.errors import GenerationError
from mlx_entropix.io.load import load
from mlx_entropix.server import ServerSettings

import httpx
import mlx.core as mx
import pytest
from conftest import drain

from tests._live_server import LiveServer, iter_sse, read_sse
from tests.test_load import write_tiny_hf

ROOT = Path(__file__).resolve().parent.parent
ZEBRA = 29106  # " zebra" in the embedded model's tokenizer
BAD, CLEAN = "Tell me about the zebra.", "Name a colour."
MESSAGE = "non-finite logits (the model produced NaN/inf at token 0)"


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory, embedded) -> Path:
    path = write_tiny_hf(tmp_path_factory.mktemp("ckpt") / "poisoned", embedded.tokenizer)
    weights = mx.load(str(path / "model.safetensors"))
    weights["model.embed_tokens.weight"][ZEBRA] = float("nan")
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    return path


@pytest.fixture(scope="module")
def lm(poisoned):
    return load(str(poisoned))


def view(events) -> list:
    return [(e.type, getattr(e, "id", None), e.text if e.type != "error" else e.message)
            for _, e in events]  # fmt: skip


def run(lm, prompts: list[tuple[str, list]], decoder: BatchDecoder | None = None) -> list:
    decoder = decoder or BatchDecoder(lm)
    reqs = [decoder.submit(prepare_prompt(lm, p, max_tokens=6), rows, max_tokens=6)
            for p, rows in prompts]  # fmt: skip
    out: dict[int, list] = {i: [] for i in range(len(reqs))}
    drain({i: decoder.pull(r) for i, r in enumerate(reqs)}, out)
    return [view(out[i]) for i in range(len(reqs))]


def test_a_poisoned_request_ends_alone_and_leaves_clean_slots(lm):
    assert ZEBRA in prepare_prompt(lm, BAD) and ZEBRA not in prepare_prompt(lm, CLEAN)
    [alone] = run(lm, [(CLEAN, [("greedy", 0)])])
    assert alone[-1][0] == "done" and len(alone) == 7
    decoder = BatchDecoder(lm)
    bad, clean = run(lm, [(BAD, [("entropix", 1), ("normal", 1)]), (CLEAN, [("greedy", 0)])],
                     decoder)  # fmt: skip
    assert bad == [("error", None, MESSAGE)] * 2  # one per row, no traceback
    assert clean == alone  # the other request of the batch, untouched
    assert decoder.requests == []
    # the poisoned rows' slots (their keys hold NaN) serve the next request as new ones
    [after] = run(lm, [(CLEAN, [("greedy", 0)])], decoder)
    assert after == alone
    with pytest.raises(GenerationError, match="at token 0"):  # the CLI's and the eval's door
        list(generate(lm, BAD, mode="fork", max_tokens=4))


def poison(shared, logits, slot: int) -> None:
    """Slot ``slot``'s step gone non-finite: its logits and its values in the cache NaN."""
    rows = slice(slot * shared.n_kv, (slot + 1) * shared.n_kv)
    for values in shared.values:
        values[rows] = float("nan")
    logits[slot] = float("nan")


def test_a_fork_branch_turned_nan_leaves_clean_slots(lm, monkeypatch):
    """A branch whose logits (and so its keys and values) turn NaN: the fork keeps a finite
    one (a NaN branch ranks last), and the slots the branches free are zeroed, so the next
    request's rows there are clean."""
    three = [("normal", s) for s in (1, 2, 3)]
    [alone] = run(lm, [(CLEAN, three)])
    decoder = BatchDecoder(lm)
    cfg = lm.default_config.merged({"fork_branches": 3, "fork_branch_tokens": 4})
    fork = decoder.submit(prepare_prompt(lm, CLEAN), [("fork", 0)], config=cfg, max_tokens=5)
    real, bad = lm.model.decode_shared, []

    def one_branch_nan(tokens, shared, compile=True):
        logits, scores = real(tokens, shared, compile)
        if fork.branches is not None and len(fork.slots) > 1:  # a step of its branch rows
            bad[:] = bad or [min(fork.slots)]
            if bad[0] in fork.slots:
                poison(shared, logits, bad[0])
        return logits, scores

    monkeypatch.setattr(lm.model, "decode_shared", one_branch_nan)
    events: dict[int, list] = {0: []}
    drain({0: decoder.pull(fork)}, events)
    monkeypatch.undo()
    assert bad and events[0][-1][1].type == "done"  # the branch was poisoned, another kept
    [after] = run(lm, [(CLEAN, three)], decoder)  # three slots: the branches' among them
    assert after == alone


def test_an_ended_row_turned_nan_leaves_clean_slots(lm, monkeypatch):
    """A row that ended (its stop string at its first token) idles along while its request's
    other row runs; its values turning NaN then (no event reads them) zero its slot when the
    request ends, so the next request's rows there are clean."""
    two = [("greedy", 0), ("normal", 7)]
    [alone] = run(lm, [(CLEAN, two)])
    decoder = BatchDecoder(lm)
    req = decoder.submit(prepare_prompt(lm, CLEAN), two, max_tokens=6, stop=["healthy"])
    real = lm.model.decode_shared

    def ended_row_nan(tokens, shared, compile=True):
        logits, scores = real(tokens, shared, compile)
        if req.streams[0].finished and not req.finished:
            poison(shared, logits, req.slots[0])
        return logits, scores

    monkeypatch.setattr(lm.model, "decode_shared", ended_row_nan)
    events: dict[int, list] = {0: []}
    drain({0: decoder.pull(req)}, events)
    monkeypatch.undo()
    dones = [e for _, e in events[0] if e.type == "done"]
    assert [d.finish_reason for d in dones] == ["stop_string", "length"]  # both rows fine
    [after] = run(lm, [(CLEAN, two)], decoder)
    assert after == alone


def test_a_request_cancelled_on_a_nan_step_leaves_clean_slots(lm, monkeypatch):
    """Cancelled (a client gone) right after a step whose values turned NaN, before anyone
    read them: its slots are zeroed when freed, so the next request's rows there are clean."""
    two = [("greedy", 0), ("normal", 7)]
    [alone] = run(lm, [(CLEAN, two)])
    decoder = BatchDecoder(lm)
    gone: list[bool] = []
    req = decoder.submit(prepare_prompt(lm, CLEAN), two, max_tokens=8,
                         should_stop=lambda: bool(gone))  # fmt: skip
    real = lm.model.decode_shared

    def nan_then_cancel(tokens, shared, compile=True):
        logits, scores = real(tokens, shared, compile)
        if req.index == 2:  # the step after it: NaN, and the client leaves
            for slot in req.slots:
                poison(shared, logits, slot)
            gone.append(True)
        return logits, scores

    monkeypatch.setattr(lm.model, "decode_shared", nan_then_cancel)
    events: dict[int, list] = {0: []}
    drain({0: decoder.pull(req)}, events)
    monkeypatch.undo()
    dones = [e for _, e in events[0] if e.type == "done"]
    assert [d.finish_reason for d in dones] == ["cancelled", "cancelled"]
    [after] = run(lm, [(CLEAN, two)], decoder)
    assert after == alone


def test_the_cli_exits_1_with_one_line(poisoned):
    for json_out in (False, True):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "mlx_main.py"), "--model", str(poisoned), "--input", BAD,
             "--max-tokens", "3", *(["--json"] if json_out else [])],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 1
        assert proc.stderr == f"mlx_main.py: error: {MESSAGE}\n"
        if json_out:  # the JSON lines end with the schema's error event
            last = json.loads(proc.stdout.splitlines()[-1])
            assert last == {"type": "error", "mode": None, "message": MESSAGE}


def test_a_model_that_fails_its_warm_up_is_reported_at_the_start(tmp_path, embedded, caplog):
    """A model whose logits are NaN for every prompt: the server still starts (each request
    gets the error), but its log says so at once instead of staying silent."""
    from mlx_entropix.server.engine import Engine

    path = write_tiny_hf(tmp_path / "nan-head", embedded.tokenizer)
    weights = mx.load(str(path / "model.safetensors"))
    weights["lm_head.weight"] = weights["lm_head.weight"] * float("nan")
    mx.save_safetensors(str(path / "model.safetensors"), weights)
    with caplog.at_level("WARNING", logger="mlx_entropix.server"):
        Engine.load(ServerSettings(model=str(path), ui_dir=None))
    assert f"the warm-up (entropix, 'Hi') failed: {MESSAGE}" in caplog.text


def test_the_server_ends_that_stream_only(poisoned):
    settings = ServerSettings(model=str(poisoned), max_tokens_limit=400, ui_dir=None)
    clean = {"prompt": CLEAN, "mode": "greedy", "max_tokens": 400}
    with LiveServer(settings) as live, httpx.Client(base_url=live.url, timeout=300) as c:
        started = threading.Event()

        def sse(body: dict) -> list[tuple[str, str | None, str]]:
            out = []
            with c.stream("POST", "/api/generate", json=body) as r:
                for name, data in (x for x in iter_sse(r) if not isinstance(x, str)):
                    e = json.loads(data)
                    out.append((name, e.get("id"), e.get("text") or e.get("message")))
                    started.set()
            return out

        alone = sse(clean)
        assert alone[-1][0] == "done" and len(alone) == 401
        started.clear()
        with ThreadPoolExecutor(1) as pool:
            ours = pool.submit(sse, clean)
            started.wait(60)  # the clean stream runs: the poisoned one joins its batch
            assert sse({"prompt": BAD, "mode": "entropix", "max_tokens": 4}) == [
                ("error", None, MESSAGE)]  # fmt: skip
            assert not ours.done()  # they overlapped
            assert ours.result() == alone
        assert sse(clean) == alone  # the slots it left
        chat = {"model": "m", "messages": [{"role": "user", "content": BAD}], "max_tokens": 4}
        r = c.post("/v1/chat/completions", json=chat)
        assert r.status_code == 500 and r.json()["error"]["message"] == MESSAGE
        with c.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as r:
            chunks = [e for e in read_sse(r).json() if "error" in e]
        assert [e["error"]["message"] for e in chunks] == [MESSAGE]
