"""A Llama that also reports what the entropix sampler needs from its attention.

The whole model on one page: token embedding, N blocks of (RMSNorm -> grouped-query attention
with RoPE -> residual, RMSNorm -> SwiGLU MLP -> residual), final RMSNorm, tied or untied head.
Parameter names follow Hugging Face / mlx-lm (``model.layers.0.self_attn.q_proj``...), so
safetensors and MLX checkpoints load as they are and GGUF names map onto them.

Each pass returns ``(logits, scores)`` (``protocol.Forward``: the last layer's scores of the last
query); every other layer keeps the fused attention kernel.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import MISSING, dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.cache import KVCache
from mlx_lm.models.rope_utils import initialize_rope

from ..uncertainty.compiled import compiled
from ..uncertainty.metrics import softmax_keys, vocab_exp
from .protocol import Forward
from .shared_cache import SharedCache, SharedStep, live_keys_exact, masked_attention

ONE_QK_ON_CPU = True  # False: SDPA + separate scores on the CPU too (for measurements)
# From this many keys on, a CPU decode step's attention uses ``softmax_keys`` (None: never),
# and a prefill chunk of up to LONG_CONTEXT_CHUNK queries ``prefill_attention``.
FAST_SOFTMAX_KEYS: int | None = 1024
LONG_CONTEXT_CHUNK = 512  # its scores: 4 bytes x heads x queries x keys


def _swiglu(gate: mx.array, up: mx.array) -> mx.array:
    """silu(gate) * up with ``vocab_exp`` for exp(-|gate|): MLX's CPU sigmoid made the MLP's
    activation a third of a short prompt's prefill (measured, issue 13)."""
    e = vocab_exp(-mx.abs(gate))
    return gate * (mx.where(gate >= 0, 1.0, e) / (1.0 + e)) * up


def prefill_attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float
) -> tuple[mx.array, mx.array]:
    """Causal attention of the last L positions over K keys, on the CPU: q (B, H, L, d), k/v
    (B, Hkv, K, d). Over long contexts a prefill's attention is mostly its softmax, and MLX's
    CPU exp is scalar (~15 ns a score); numpy's is vectorised (~2). The heads of a group are
    one matrix; the products stay in MLX (numpy's own BLAS threads would fight MKL's for the
    cores: a whole prefill ran 1.5x slower), the softmax runs in place in one numpy copy
    (15 queries over 1,824 keys: 8.2 ms a layer with SDPA, 2.6 with this; benchmarks/README.md).
    Returns the output (B, L, H * d) and the last query's scores (B, H, K)."""
    B, H, L, d = q.shape
    n_kv, K = k.shape[1], k.shape[2]
    rep = H // n_kv
    scores = (q * scale).reshape(B, n_kv, rep * L, d) @ k.swapaxes(-1, -2)
    last = scores.reshape(B, H, L, K)[:, :, -1]
    s = np.array(scores, dtype=np.float32)  # evaluates (the layer's work so far runs here)
    causal = np.arange(K)[None] <= np.arange(K - L, K)[:, None]  # (L, K)
    s += np.tile(np.where(causal, np.float32(0), np.float32(-np.inf)), (rep, 1))
    s -= s.max(axis=-1, keepdims=True)
    np.exp(s, out=s)
    s /= s.sum(axis=-1, keepdims=True)
    out = (mx.array(s).astype(v.dtype) @ v).reshape(B, H, L, d)
    return out.transpose(0, 2, 1, 3).reshape(B, L, H * d), last


def run_steps(steps: Generator[None, None, Any]) -> Any:
    """A layer-by-layer pass (``layer_steps``, ``step_shared``) run to its end: its value."""
    try:
        while True:
            next(steps)
    except StopIteration as end:
        return end.value


@dataclass
class ModelArgs:
    hidden_size: int
    num_hidden_layers: int
    intermediate_size: int
    num_attention_heads: int
    vocab_size: int
    rms_norm_eps: float = 1e-5
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    max_position_embeddings: int = 8192
    rope_theta: float = 10000.0
    # GGUF stores q/k permuted for interleaved ("traditional") RoPE; HF checkpoints do not.
    rope_traditional: bool = False
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = True
    attention_bias: bool = False
    mlp_bias: bool = False
    model_type: str = "llama"

    def __post_init__(self) -> None:
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelArgs:
        known = set(cls.__dataclass_fields__)  # the rest of a config.json: not read
        return cls(**{k: v for k, v in config.items() if k in known and v is not None})


def size_problem(config: dict[str, Any]) -> str | None:
    """What a config.json's sizes lack to make a Llama ("has ..."), or None. Else a string
    size was a TypeError, a zero head count a ZeroDivisionError, a negative size "math domain
    error", and a hidden size the heads do not divide an error of the tokenizer's load
    (transformers checks config.json there)."""
    required = [k for k, f in ModelArgs.__dataclass_fields__.items() if f.default is MISSING]
    if lacking := [k for k in required if type(config.get(k)) is not int]:  # bool is none
        return f"has no integer {', '.join(lacking)}"
    if bad := [f"{k} {config[k]}" for k in required if config[k] < 1]:
        return f"has {', '.join(bad)}: sizes must be positive"
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv = config.get("num_key_value_heads") or heads
    if hidden % heads:
        return f"has hidden_size {hidden}, not a multiple of num_attention_heads {heads}"
    if type(kv) is not int or kv < 1 or heads % kv:
        return f"has num_attention_heads {heads}, not a multiple of num_key_value_heads {kv}"
    return None


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.num_attention_heads
        self.n_kv_heads = args.num_key_value_heads
        self.head_dim = args.head_dim
        self.scale = self.head_dim**-0.5
        dim, bias = args.hidden_size, args.attention_bias
        self.q_proj = nn.Linear(dim, self.n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, dim, bias=bias)
        self.rope = initialize_rope(
            self.head_dim,
            args.rope_theta,
            args.rope_traditional,
            args.rope_scaling,
            args.max_position_embeddings,
        )

    def project(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """q, k, v of every row and position, (B, heads, L, head_dim), before RoPE."""
        B, L, _ = x.shape
        q = self.q_proj(x).reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)
        k = self.k_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        v = self.v_proj(x).reshape(B, L, self.n_kv_heads, -1).transpose(0, 2, 1, 3)
        return q, k, v

    def attend(
        self, q: mx.array, k: mx.array, v: mx.array, mask: Any, cache: KVCache, want_scores: bool
    ) -> tuple[mx.array, mx.array | None]:
        """RoPE at the cache's offset, cache update, attention: (B, L, heads * head_dim) before
        ``o_proj``, and the scores if wanted. Rows sharing one cache share its offset; the
        decode step of a ``SharedCache`` uses its own (``Block.shared``)."""
        B, _, L, _ = q.shape
        q = self.rope(q, offset=cache.offset)
        k = self.rope(k, offset=cache.offset)
        k, v = cache.update_and_fetch(k, v)

        rep = self.n_heads // self.n_kv_heads
        on_cpu = mx.default_device() == mx.cpu
        long_keys = on_cpu and FAST_SOFTMAX_KEYS is not None and k.shape[2] >= FAST_SOFTMAX_KEYS
        if L == 1 and ONE_QK_ON_CPU and on_cpu and (want_scores or long_keys):
            # No fused attention kernel on the CPU: MLX's SDPA computes q.k^T itself, so a
            # decode step would compute it twice. Compute it once, as the fallback does; over
            # long contexts with a faster softmax than MLX's CPU one (``softmax_keys``).
            q1 = (q * self.scale).reshape(B, self.n_kv_heads, rep, 1, self.head_dim)
            scores = q1 @ k[:, :, None].swapaxes(-1, -2)  # (B, Hkv, rep, 1, K)
            if long_keys:
                probs = compiled(softmax_keys, shapeless=True)(scores)
            else:
                probs = mx.softmax(scores, axis=-1, precise=True)
            attn = probs @ v[:, :, None]
            out = attn.reshape(B, self.n_heads, L, -1).transpose(0, 2, 1, 3).reshape(B, L, -1)
            if not want_scores:
                return out, None
            return out, scores.reshape(B, self.n_heads, -1).astype(mx.float32)
        if 1 < L <= LONG_CONTEXT_CHUNK and long_keys:
            out, scores = prefill_attention(q, k, v, self.scale)
            return out, scores if want_scores else None
        out = mx.fast.scaled_dot_product_attention(q, k, v, scale=self.scale, mask=mask)
        out = out.transpose(0, 2, 1, 3).reshape(B, L, -1)
        if not want_scores:
            return out, None
        # Scores of the last query over all K filled keys (the causal mask allows them all),
        # beside the fused kernel (Metal, CUDA) rather than instead of it: only the metrics
        # depend on them. Group query heads by their shared kv head instead of repeating k.
        q_last = q[:, :, -1, :].reshape(B, self.n_kv_heads, rep, self.head_dim)
        scores = (q_last * self.scale) @ k.swapaxes(-1, -2)  # (B, Hkv, rep, K)
        return out, scores.reshape(B, self.n_heads, -1).astype(mx.float32)

    def __call__(
        self, x: mx.array, mask: Any, cache: KVCache, want_scores: bool
    ) -> tuple[mx.array, mx.array | None]:
        out, scores = self.attend(*self.project(x), mask, cache, want_scores)
        return self.o_proj(out), scores


class MLP(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        dim, hidden, bias = args.hidden_size, args.intermediate_size, args.mlp_bias
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)

    def __call__(self, x: mx.array) -> mx.array:
        gate, up = self.gate_proj(x), self.up_proj(x)
        # A prefill only: a decode step's 1536 values gain less than a compiled call costs.
        # Compiled per shape (``vocab_exp``'s view is not shapeless): a trace per new length.
        if x.shape[1] > 1 and mx.default_device() == mx.cpu:
            return self.down_proj(compiled(_swiglu)(gate, up))
        return self.down_proj(nn.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.input_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.self_attn = Attention(args)
        self.post_attention_layernorm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)
        self.mlp = MLP(args)

    def __call__(
        self, x: mx.array, mask: Any, cache: KVCache, want_scores: bool = False
    ) -> tuple[mx.array, mx.array | None]:
        r, scores = self.self_attn(self.input_layernorm(x), mask, cache, want_scores)
        h = x + r
        return h + self.mlp(self.post_attention_layernorm(h)), scores

    def shared(
        self, x: mx.array, layer: int, cache: SharedCache, step: SharedStep
    ) -> tuple[mx.array, mx.array]:
        """A step of rows held in a ``SharedCache``, each at its own position (one token per row,
        or a right-padded prompt per row): every operation over all rows at once; returns the
        new hidden state and the scores (rows, heads, queries, keys)."""
        attn = self.self_attn
        q, k, v = attn.project(self.input_layernorm(x))
        q, k = attn.rope(q, offset=step.positions), attn.rope(k, offset=step.positions)
        cache.write(layer, step, k, v)
        keys, values = cache.view(layer, x.shape[0], step.keys)
        out, scores = masked_attention(q, keys, values, step.valid, attn.scale)
        h = x + attn.o_proj(out)
        return h + self.mlp(self.post_attention_layernorm(h)), scores


class LlamaModel(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size)
        self.layers = [Block(args) for _ in range(args.num_hidden_layers)]
        self.norm = nn.RMSNorm(args.hidden_size, eps=args.rms_norm_eps)


class Model(nn.Module):
    # Set by ``runtime.distributed.shard_model`` under ``mlx.launch`` (``protocol.py``).
    group: mx.distributed.Group | None = None
    head_group: mx.distributed.Group | None = None
    last_window: int | None = None  # every layer global (``SharedBatch``)

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.model = LlamaModel(args)
        if not args.tie_word_embeddings:
            self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)

    @property
    def layers(self) -> list[Block]:
        return self.model.layers

    def make_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.layers]

    def __call__(self, inputs: mx.array, cache: list[KVCache], last_only: bool = False) -> Forward:
        """``last_only``: logits of the last position only (a prefill needs no more; the head
        is the largest matmul of a long prompt)."""
        return run_steps(self.layer_steps(inputs, cache, last_only, evaluate=False))

    def layer_steps(
        self, inputs: mx.array, cache: list[KVCache], last_only: bool = False, evaluate: bool = True
    ) -> Generator[None, None, Forward]:
        """``protocol.LayerSteps`` plus a yield before the head; ``evaluate``: each layer evaluated
        before the next yield. The ops of one lazy pass, so its results; only the head is lazy."""
        h = self.model.embed_tokens(inputs)
        # "causal" lets the fused kernel build the mask; a single query needs none.
        mask = "causal" if h.shape[1] > 1 else None
        scores = None
        for i, (layer, c) in enumerate(zip(self.layers, cache, strict=True)):
            yield
            h, s = layer(h, mask, c, want_scores=i == len(self.layers) - 1)
            scores = s if s is not None else scores
            if evaluate:
                mx.eval(h, c.state, *([] if s is None else [s]))
        yield
        return self.head(h[:, -1:] if last_only else h), scores

    def head(self, h: mx.array) -> mx.array:
        """Final norm and the vocabulary projection (tied to the embedding or not)."""
        h = self.model.norm(h)
        if self.args.tie_word_embeddings:
            return self.model.embed_tokens.as_linear(h)
        return self.lm_head(h)

    def step_shared(self, tokens: mx.array, cache: SharedCache, counts: list[int] | None = None,
                    evaluate: bool = False) -> Generator[None, None, Forward]:  # fmt: skip
        """A step of the rows of a ``SharedCache``, a layer at a time (as ``layer_steps``):
        ``tokens`` (slots,) one per row (a decode step; free slots: any) or (slots, L) with
        ``counts`` real ones per row, right-padded (a batch of prompts). Returns the logits of
        each row's last real token (slots, 1, V) and its last-layer scores (slots, heads, K),
        the keys it does not see at -inf. A row's results do not depend on the other rows
        (``shared_cache``; the dense layers': where the BLAS is batch-invariant, ``blas``)."""
        tokens = tokens.reshape(tokens.shape[0], -1)
        step = cache.begin_step(tokens.shape[1], counts)
        h = self.model.embed_tokens(tokens)
        scores = None
        for i, layer in enumerate(self.layers):
            yield
            h, scores = layer.shared(h, i, cache, step)
            if evaluate:  # a prefill: each layer done before the next yield (interruptible)
                mx.eval(h, cache.keys[i], cache.values[i])
        cache.end_step()
        yield
        h, scores = cache.at_last(h, 1), cache.at_last(scores, 2)  # type: ignore[arg-type]
        return self.head(h), scores[:, :, 0]

    def decode_shared(self, tokens: mx.array, cache: SharedCache, compile: bool = True) -> Forward:
        """``step_shared``'s decode step (a token per row) in one call; ``compile``: traced once
        per batch shape, no Python between layers: the same bits (``test_shared_cache.py``),
        about a fifth less time a token on a 2-core CPU."""
        return cache.decode(compiled(self._decode_rows, compile), tokens)

    def _decode_rows(self, tokens: mx.array, keys: list[mx.array], values: list[mx.array],
                     *step: mx.array) -> tuple[mx.array, mx.array, list, list]:  # fmt: skip
        """``decode_shared``'s pass, a pure function of the cache's buffers (to be traced)."""
        attn = self.layers[0].self_attn
        cache = SharedCache(len(self.layers), attn.n_kv_heads, attn.head_dim).over(keys, values)
        positions, valid, rows, at = step
        shape = SharedStep(positions, valid, valid.shape[-1], rows, at)
        h = self.model.embed_tokens(tokens[:, None])
        for i, layer in enumerate(self.layers):
            h, scores = layer.shared(h, i, cache, shape)
        return self.head(h), scores[:, :, 0], cache.keys, cache.values

    def shared_cache(self) -> SharedCache:
        attn = self.layers[0].self_attn  # this rank's heads, when they are split over ranks
        live = live_keys_exact(attn.n_heads, attn.n_kv_heads, attn.head_dim)  # type: ignore[arg-type]
        return SharedCache(len(self.layers), attn.n_kv_heads, self.args.head_dim, live=live)  # type: ignore[arg-type]
