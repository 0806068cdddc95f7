"""Entropix inside mlx-lm's own loop: the README example runs, and the sampler picks the tokens
our engine picks on the same weights, prompt ids and seed, in every mode."""

from __future__ import annotations

import re
from pathlib import Path

from mlx_entropix.config import SamplerConfig
from mlx_entropix.engine.generate import generate
from mlx_entropix.eval.reference_model import to_mlx_lm
from mlx_entropix.mlx_lm_sampler import make_sampler

import mlx_lm
import pytest
from mlx_lm import stream_generate
from mlx_lm.tokenizer_utils import TokenizerWrapper

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def mlx_lm_pair(embedded):
    """The embedded model's weights in mlx-lm's own Llama, and its tokenizer as mlx-lm wraps it."""
    return to_mlx_lm(embedded), TokenizerWrapper(embedded.tokenizer.hf)


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "make_sampler" in b]
    assert len(found) == 1, "the README has one mlx-lm sampler example"
    return found[0]


def test_readme_example_runs(mlx_lm_pair, monkeypatch, capsys):
    """Exactly the README's lines, with ``mlx_lm.load`` giving the embedded model (no download)."""
    code = readme_example()
    assert len([line for line in code.splitlines() if line.strip()]) <= 7
    calls = []

    def fake_load(path, *args, **kwargs):
        calls.append(path)
        return mlx_lm_pair

    monkeypatch.setattr(mlx_lm, "load", fake_load)
    outputs = []
    for _ in range(2):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
        outputs.append(capsys.readouterr().out)
    assert calls and outputs[0].strip()
    assert outputs[0] == outputs[1]  # seeded: the same text twice


@pytest.mark.parametrize("mode", ["entropix", "normal", "greedy"])
def test_same_tokens_as_our_engine(embedded, mlx_lm_pair, mode):
    ref, tokenizer = mlx_lm_pair
    ids = embedded.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Which number is larger, 9.9 or 9.11?"}]
    )
    cfg = SamplerConfig()
    ours = [
        e.id
        for e in generate(embedded, ids, mode=mode, config=cfg, seed=7, max_tokens=20)
        if e.type == "token"
    ]
    sampler = make_sampler(cfg, mode=mode, seed=7, model=ref, tokenizer=embedded.tokenizer.hf)
    assert sampler.attention_observed  # mlx-lm's Llama: all six metrics
    theirs = [r.token for r in stream_generate(ref, tokenizer, ids, max_tokens=20, sampler=sampler)]
    assert sampler.step >= len(ours) > 0
    assert theirs[: len(ours)] == ours
    assert sampler.last_metrics.shape == (1, 6)


def test_logits_only_without_the_model(mlx_lm_pair):
    """Without ``model`` the attention metrics are NaN (unavailable) and sampling still runs."""
    ref, tokenizer = mlx_lm_pair
    sampler = make_sampler(seed=1)
    out = [r.token for r in stream_generate(ref, tokenizer, "Hello", max_tokens=4, sampler=sampler)]
    assert len(out) == 4 and not sampler.attention_observed
    m = sampler.last_metrics.tolist()[0]
    assert m[0] == m[0] and all(v != v for v in m[2:])  # entropy a number, attention NaN
