"""Llama-3.x GGUF files: RoPE scaling read from ``rope_freqs``, same logits as HF safetensors."""

from __future__ import annotations

import json
from pathlib import Path

from mlx_entropix.errors import ModelLoadError
from mlx_entropix.io.gguf import rope_scaling
from mlx_entropix.io.load import embedded_model_path, load

import gguf
import mlx.core as mx
import numpy as np
import pytest

from tests.test_load import TINY, write_tiny_hf
from tests.test_model import PROMPT

_NAMES = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf q/k permutation (HF halves -> interleaved pairs)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _rope_freqs(scaling: dict, head_dim: int, base: float) -> np.ndarray:
    """llama.cpp's Llama-3 ``rope_freqs`` (convert_hf_to_gguf.py, LlamaModel)."""
    factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    out = []
    for freq in 1.0 / base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim):
        wavelen = 2 * np.pi / freq
        if wavelen < old / hi:
            out.append(1.0)
        elif wavelen > old / lo:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_gguf(hf_dir: Path, out: Path, rope: str = "llama3") -> Path:
    """The HF checkpoint as llama.cpp would convert it (f32 tensors, tokenizer from the embedded
    GGUF). ``rope``: "llama3" (rope_freqs tensor), "yarn" (unsupported metadata) or "none"."""
    config = json.loads((hf_dir / "config.json").read_text())
    n_head, n_kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config["hidden_size"] // n_head
    _, meta = mx.load(str(embedded_model_path()), return_metadata=True)

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_block_count(config["num_hidden_layers"])
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(config["rope_theta"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_vocab_size(config["vocab_size"])
    if rope == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(4.0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(str(meta["tokenizer.ggml.pre"]))
    w.add_token_list(list(meta["tokenizer.ggml.tokens"]))
    w.add_token_merges(list(meta["tokenizer.ggml.merges"]))
    w.add_token_types([int(t) for t in np.array(meta["tokenizer.ggml.token_type"])])
    w.add_bos_token_id(int(meta["tokenizer.ggml.bos_token_id"].item()))
    w.add_eos_token_id(int(meta["tokenizer.ggml.eos_token_id"].item()))

    weights = {k: np.array(v) for k, v in mx.load(str(hf_dir / "model.safetensors")).items()}
    tensors = {
        "token_embd.weight": weights.pop("model.embed_tokens.weight"),
        "output_norm.weight": weights.pop("model.norm.weight"),
        "output.weight": weights.pop("lm_head.weight"),
    }
    for name, value in weights.items():
        _, _, i, rest = name.split(".", 3)
        stem = rest.rsplit(".", 1)[0]
        if stem == "self_attn.q_proj":
            value = _permute(value, n_head)
        elif stem == "self_attn.k_proj":
            value = _permute(value, n_kv)
        tensors[f"blk.{i}.{_NAMES[stem]}.weight"] = value
    if rope == "llama3":
        tensors["rope_freqs.weight"] = _rope_freqs(
            config["rope_scaling"], head_dim, config["rope_theta"]
        )
    for name, value in tensors.items():
        w.add_tensor(name, np.ascontiguousarray(value, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory, embedded):
    root = tmp_path_factory.mktemp("llama3")
    hf = write_tiny_hf(root / "tiny-hf", embedded.tokenizer, seed=3)
    return hf, write_gguf(hf, root / "tiny-llama3.gguf")


def test_llama3_gguf_matches_hf_safetensors(tiny_pair):
    hf_dir, gguf_path = tiny_pair
    g, h = load(str(gguf_path)), load(str(hf_dir))
    assert g.model.args.rope_traditional and not h.model.args.rope_traditional
    scaling = g.model.args.rope_scaling
    assert scaling["rope_type"] == "llama3"
    assert scaling["factor"] == pytest.approx(TINY["rope_scaling"]["factor"])
    ids = mx.array(h.tokenizer.encode(PROMPT))[None]
    assert g.tokenizer.encode(PROMPT) == h.tokenizer.encode(PROMPT)
    lg, sg = g.model(ids, g.model.make_cache())
    lh, sh = h.model(ids, h.model.make_cache())
    assert mx.abs(lg - lh).max().item() < 1e-4
    assert mx.abs(sg - sh).max().item() < 1e-4
    # The scaling matters at these positions: dropping it (the old behaviour) changes the logits.
    g.model.args.rope_scaling = None
    from mlx_entropix.models.llama import Model

    plain = Model(g.model.args)
    plain.update(g.model.parameters())
    lp, _ = plain(ids, plain.make_cache())
    assert mx.abs(lp - lh).max().item() > 1e-3


@pytest.mark.parametrize(
    "scaling",
    [
        {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "old": 8192},  # 3.1
        {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "old": 8192},  # 3.2
        {"factor": 16.0, "low_freq_factor": 2.0, "high_freq_factor": 8.0, "old": 4096},
    ],
)
def test_rope_freqs_map_back_to_hf_parameters(scaling):
    """Real Llama-3 shapes (head_dim 128, theta 500000): the fitted dict reproduces the tensor."""
    hf = {k: v for k, v in scaling.items() if k != "old"}
    hf["original_max_position_embeddings"] = scaling["old"]
    freqs = _rope_freqs(hf, 128, 500000.0)
    meta = {"llama.rope.scaling.original_context_length": hf["original_max_position_embeddings"]}
    got = rope_scaling(meta, {"rope_freqs.weight": mx.array(freqs)}, 128, 500000.0)
    assert got["rope_type"] == "llama3"
    for key, value in hf.items():
        assert got[key] == pytest.approx(value, rel=1e-3)


def test_unsupported_rope_type_fails_clearly(tiny_pair, tmp_path):
    hf_dir, _ = tiny_pair
    path = write_gguf(hf_dir, tmp_path / "yarn.gguf", rope="yarn")
    with pytest.raises(ModelLoadError, match="rope scaling type 'yarn' is not supported"):
        load(str(path))
    bogus = {"rope_freqs.weight": mx.array(np.linspace(1, 3, 8, dtype=np.float32)[::-1].copy())}
    with pytest.raises(ModelLoadError, match="not Llama-3 RoPE scaling"):
        rope_scaling({}, bogus, 16, 500000.0)
