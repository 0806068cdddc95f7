"""Our Llama against mlx-lm's own implementation on the same weights, and real text out."""

from __future__ import annotations

from mlx_entropix.eval.reference_model import to_mlx_lm

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.models.cache import make_prompt_cache

PROMPT = (
    "The quick brown fox jumps over the lazy dog. Entropy measures how uncertain the model is "
    "about its next token, and varentropy how much that uncertainty varies."
)


def assert_same_logits(lm, ref, ids: list[int], steps: int = 10, atol: float = 1e-4) -> None:
    """Prefill ``ids`` then ``steps`` cached greedy decode steps; logits must agree each time."""
    ours_cache, ref_cache = lm.model.make_cache(), make_prompt_cache(ref)
    x = mx.array(ids)[None]
    for step in range(steps + 1):
        ours, scores = lm.model(x, ours_cache)
        theirs = ref(x, cache=ref_cache)
        diff = mx.abs(ours.astype(mx.float32) - theirs.astype(mx.float32)).max().item()
        assert diff < atol, f"step {step}: max |logit diff| {diff:.2e}"
        assert scores.shape == (1, lm.model.args.num_attention_heads, ours_cache[-1].offset)
        x = mx.argmax(ours[:, -1], axis=-1)[None]


def test_embedded_matches_mlx_lm(embedded):
    ids = embedded.tokenizer.encode(PROMPT)
    assert len(ids) >= 30
    assert_same_logits(embedded, to_mlx_lm(embedded), ids)


def test_scores_are_last_layer_pre_softmax(embedded):
    """Recompute the last layer's q.k^T/sqrt(d) by hand from a cache-free pass."""
    model = embedded.model
    ids = mx.array(embedded.tokenizer.encode("One two three four five"))[None]
    cache = model.make_cache()
    _, scores = model(ids, cache)
    attn = model.layers[-1].self_attn
    k = cache[-1].keys[..., : cache[-1].offset, :]  # (1, Hkv, K, D), already rotated
    # Rebuild the last query through the same path the model uses.
    h = model.model.embed_tokens(ids)
    fresh = model.make_cache()
    for layer, c in zip(model.layers[:-1], fresh[:-1], strict=True):
        h, _ = layer(h, "causal", c)
    x = model.layers[-1].input_layernorm(h)
    q = attn.q_proj(x).reshape(1, ids.shape[1], attn.n_heads, -1).transpose(0, 2, 1, 3)
    q = attn.rope(q)[:, :, -1:, :]
    rep = attn.n_heads // attn.n_kv_heads
    k_rep = mx.repeat(k, rep, axis=1)
    expected = (q @ k_rep.swapaxes(-1, -2))[:, :, 0, :] * attn.scale
    np.testing.assert_allclose(np.array(scores), np.array(expected), atol=1e-4)


def test_greedy_9_9_vs_9_11(embedded):
    tok = embedded.tokenizer
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Which number is larger, 9.9 or 9.11?"}]
    )
    cache = embedded.model.make_cache()
    logits, _ = embedded.model(mx.array(ids)[None], cache)
    out: list[int] = []
    for _ in range(18):
        nxt = mx.argmax(logits[:, -1], axis=-1)
        out.append(nxt.item())
        logits, _ = embedded.model(nxt[None], cache)
    assert tok.decode(out).startswith(
        "To solve this problem, we need to find the difference between the two numbers."
    )


@pytest.mark.parametrize("n", [1, 7])
def test_batch_and_cache_agree(embedded, n):
    """Prefill all at once == prefill then decode one by one (cache correctness)."""
    ids = embedded.tokenizer.encode(PROMPT)[:20]
    full, _ = embedded.model(mx.array(ids)[None], embedded.model.make_cache())
    cache = embedded.model.make_cache()
    embedded.model(mx.array(ids[:-n])[None], cache)
    for i in range(len(ids) - n, len(ids)):
        step, _ = embedded.model(mx.array(ids[i : i + 1])[None], cache)
    diff = mx.abs(full[:, -1] - step[:, -1]).max().item()
    assert diff < 1e-3


def test_last_only_logits_equal_the_last_row(embedded):
    ids = mx.array(embedded.tokenizer.encode(PROMPT)[:12])[None]
    full, s1 = embedded.model(ids, embedded.model.make_cache())
    last, s2 = embedded.model(ids, embedded.model.make_cache(), last_only=True)
    assert last.shape == (1, 1, full.shape[-1])
    assert mx.abs(full[:, -1:] - last).max().item() < 1e-4
    assert mx.abs(s1 - s2).max().item() < 1e-5


def test_long_context_softmax_matches_mlx():
    from mlx_entropix.uncertainty.metrics import softmax_keys

    for keys in (2, 7, 1024, 3001):  # never 1: see step.observe
        scores = mx.random.normal((1, 3, 3, 1, keys)) * 8
        fast = mx.compile(softmax_keys, shapeless=True)(scores)
        assert mx.allclose(fast, mx.softmax(scores, axis=-1, precise=True), atol=1e-7).item()


def test_prefill_attention_matches_sdpa():
    from mlx_entropix.models.llama import prefill_attention

    for queries, keys in ((2, 1024), (15, 1824), (128, 1100)):
        q = mx.random.normal((1, 9, queries, 64))
        k, v = mx.random.normal((1, 3, keys, 64)), mx.random.normal((1, 3, keys, 64))
        out, last = prefill_attention(q, k, v, 0.125)
        ref = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.125, mask="causal")
        assert mx.allclose(out, ref.transpose(0, 2, 1, 3).reshape(1, queries, -1), atol=1e-5)
        q_last = q[:, :, -1].reshape(1, 3, 3, 64) * 0.125
        assert mx.allclose(last, (q_last @ k.swapaxes(-1, -2)).reshape(1, 9, keys), atol=1e-5)


def test_long_context_decode_keeps_its_tokens(embedded, monkeypatch):
    """Past FAST_SOFTMAX_KEYS keys the CPU decode attention uses ``softmax_keys`` and a short
    prefill chunk ``prefill_attention``: the same tokens as MLX's attention, metrics within
    float noise."""
    from mlx_entropix.engine.generate import generate, prepare_prompt
    from mlx_entropix.models import llama as model_module

    prompt = "The quick brown fox jumps over the lazy dog. " * 102  # 1,051 tokens
    # the last prefill chunk (27 tokens) comes after 1,024 keys: prefill_attention's case
    assert 1 < len(prepare_prompt(embedded, prompt)) - 1024 <= model_module.LONG_CONTEXT_CHUNK
    monkeypatch.setattr(model_module, "FAST_SOFTMAX_KEYS", 1024)
    fast = [e for e in generate(embedded, prompt, mode="greedy", max_tokens=6) if e.type == "token"]
    monkeypatch.setattr(model_module, "FAST_SOFTMAX_KEYS", None)
    plain = [e for e in generate(embedded, prompt, mode="greedy", max_tokens=6)
             if e.type == "token"]  # fmt: skip
    assert [e.id for e in fast] == [e.id for e in plain]
    for a, b in zip(fast, plain, strict=True):
        assert a.metrics.entropy == pytest.approx(b.metrics.entropy, rel=1e-4, abs=1e-5)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
