"""Compiled per-token functions: the same tokens and metrics as uncompiled, no recompile per
request, and a clean fallback (switched off, no C++ compiler, a trace MLX cannot compile)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from mlx_entropix.config import SamplerConfig
from mlx_entropix.engine.generate import generate
from mlx_entropix.runtime import device
from mlx_entropix.uncertainty import compiled as compiled_module
from mlx_entropix.uncertainty.compiled import ConfigArrays, compiled, config_array

import mlx.core as mx
import pytest

PROMPT = "Tell me a short story about a lighthouse keeper."
ROOT = Path(__file__).resolve().parents[1]


def run(lm, mode: str, n: int = 64, seed: int = 11) -> list:
    return [e for e in generate(lm, PROMPT, mode=mode, max_tokens=n, seed=seed)][:-1]


@pytest.mark.parametrize("mode", ["greedy", "normal", "entropix"])
def test_compiled_steps_match_uncompiled(embedded, mode):
    assert embedded.compile_steps  # g++ is present on the test machines
    fast = run(embedded, mode)
    plain = run(replace(embedded, compile_steps=False), mode)
    assert len(fast) == len(plain) == 64
    assert [e.id for e in fast] == [e.id for e in plain]
    for a, b in zip(fast, plain, strict=True):
        assert (a.state, a.action, a.params) == (b.state, b.action, b.params)
        assert a.metrics.model_dump() == pytest.approx(b.metrics.model_dump(), abs=1e-6)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-6)
        assert [t.id for t in a.top] == [t.id for t in b.top]


def test_a_new_config_does_not_retrace():
    traces = []

    def step(x: mx.array, cfg_values: mx.array, *, scale: int) -> mx.array:
        traces.append(1)  # runs only while mx.compile traces
        cfg = ConfigArrays(cfg_values)
        return x * cfg.temperature + cfg.top_k * scale

    fn = compiled(step, True, scale=2)
    x = mx.ones((1, 4))
    for cfg in (SamplerConfig(), SamplerConfig(temperature=0.3, top_k=5)):
        assert compiled(step, True, scale=2) is fn  # cached per static parameters
        out = fn(x, config_array(cfg))
        assert out.tolist()[0] == pytest.approx([cfg.temperature + 2 * cfg.top_k] * 4)
    assert len(traces) == 1


def test_a_failed_trace_falls_back_once():
    def reads_host(x: mx.array) -> mx.array:  # .item() cannot be traced
        return x * float(x.sum().item())

    fn = compiled(reads_host, True)
    with pytest.warns(RuntimeWarning, match="uncompiled"):
        assert fn(mx.ones((2,))).tolist() == [2.0, 2.0]
    assert fn(mx.ones((3,))).tolist() == [3.0] * 3  # no second warning, same results
    compiled_module._failed.clear()


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(device.ENV_COMPILE, "0")
    assert device.compile_steps() == (False, f"off ({device.ENV_COMPILE}=0)")
    monkeypatch.delenv(device.ENV_COMPILE)
    on, note = device.compile_steps()
    assert on and note.startswith("on")
    assert device.runtime_info().compiled_steps


SCRIPT = """
import json, mlx_entropix
from mlx_entropix.io.load import load
from mlx_entropix.engine.generate import generate
from mlx_entropix.runtime.device import compile_steps
lm = load()
events = generate(lm, {prompt!r}, mode="entropix", max_tokens=24, seed=11)
ids = [e.id for e in events if e.type == "token"]
print(json.dumps({{"compile": compile_steps(), "flag": lm.compile_steps, "ids": ids}}))
"""


@pytest.mark.parametrize("case", ["no_compiler", "switched_off"])
def test_fallback_gives_the_same_tokens(embedded, tmp_path, case):
    """Without a C++ compiler on the PATH (and no kernel cache) MLX runs the compiled graph
    unfused; with MLX_ENTROPIX_COMPILE=0 nothing is compiled: the tokens stay the same."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # MLX caches its CPU kernels under TMPDIR
    if case == "no_compiler":
        bindir = tmp_path / "bin"
        bindir.mkdir()
        os.symlink(sys.executable, bindir / "python")
        env["PATH"] = str(bindir)
        assert shutil.which("g++", path=env["PATH"]) is None
    else:
        env[device.ENV_COMPILE] = "0"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(prompt=PROMPT)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if case == "no_compiler":
        assert got["flag"] and "no C++ compiler" in got["compile"][1]
    else:
        assert not got["flag"]
    assert got["ids"] == [e.id for e in run(embedded, "entropix", n=24)]


def test_stop_scan_of_the_tail_finds_a_straddling_match():
    from mlx_entropix.engine.stream import StopMatcher as _StopMatcher

    stops = _StopMatcher(["STOP", "x"])
    text = "abc ST" + "OP and x"
    assert stops.find(text, len("abc ST")) == 4  # starts before the new piece
    assert stops.find(text, 0) == 4
    assert _StopMatcher(["END"]).find("no end here END", 12) == 12


def test_token_texts_are_cached(embedded):
    tok = embedded.tokenizer
    assert tok.id_to_text(1234) == tok.decode([1234]) == tok.id_to_text(1234)
    assert 1234 in tok._texts


def test_vocab_exp_is_accurate():
    from mlx_entropix.uncertainty.metrics import vocab_exp

    import numpy as np

    x = mx.concatenate([mx.linspace(-87.0, 0.0, 100_003), mx.array([-100.0, -mx.inf])])
    exact = np.exp(np.array(x[:-2]).astype(np.float64))
    got = np.array(vocab_exp(x)).astype(np.float64)
    assert np.max(np.abs(got[:-2] - exact) / exact) < 2e-7  # MLX's own exp: ~3e-6 here
    assert got[-2:].max() < 1e-37 and got[-1] >= 0.0  # far below: ~1e-38, never negative
    assert compiled(vocab_exp, True)(x).tolist() == vocab_exp(x).tolist()


def test_a_one_token_prompt_does_not_break_the_shapeless_graph():
    """MLX's shapeless graph of the attention metrics corrupts memory when run with one key
    (a one-token prompt): ``observe`` keeps such steps uncompiled. In a subprocess, since the
    failure is a crash."""
    code = """
import mlx_entropix
import mlx.core as mx
from mlx_entropix.uncertainty.step import observe
for keys in (20, 1, 30, 1, 2):
    logits = mx.random.normal((1, 1, 50))
    _, metrics, _ = observe(logits, mx.random.normal((1, 9, keys)))
    mx.eval(metrics)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-500:]
