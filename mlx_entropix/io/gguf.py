"""GGUF: what ``mx.load`` does not do for us.

``mx.load(path, return_metadata=True)`` reads the tensors (Q4_0/Q4_1/Q8_0 become MLX affine
quantized weight/scales/biases triples) and the metadata. This module maps llama.cpp tensor names
to ours, reads the model config from the metadata, and builds the byte-level BPE tokenizer and
chat template stored there.
"""

from __future__ import annotations

import math
import re
import struct
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as RawTokenizer
from transformers import PreTrainedTokenizerFast

from ..errors import ModelLoadError
from .tokenizer import Tokenizer

_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}


def map_name(name: str) -> str | None:
    """``blk.3.attn_q.scales`` -> ``model.layers.3.self_attn.q_proj.scales``; None to skip."""
    stem, _, suffix = name.rpartition(".")
    if m := re.fullmatch(r"blk\.(\d+)\.(\w+)", stem):
        ours = _BLOCK_NAMES.get(m.group(2))
        return f"model.layers.{m.group(1)}.{ours}.{suffix}" if ours else None
    ours = _TOP_NAMES.get(stem)
    return f"{ours}.{suffix}" if ours else None


def _scalar(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    value = meta.get(key, default)
    if isinstance(value, mx.array):
        value = value.item()
    return value


def _required(meta: dict[str, Any], key: str) -> Any:
    if key not in meta:
        raise ModelLoadError(f"GGUF metadata has no {key} (an incomplete file?)")
    return meta[key]


def config_from_metadata(meta: dict[str, Any], weights: dict[str, mx.array]) -> dict[str, Any]:
    arch = _scalar(meta, "general.architecture")
    if arch != "llama":
        raise ModelLoadError(f"GGUF architecture {arch!r} is not supported (only 'llama')")

    def get(key: str, default: Any = None) -> Any:
        return _scalar(meta, f"llama.{key}", default)

    def need(key: str) -> int:  # a size the model cannot be built without
        _required(meta, f"llama.{key}")
        return int(get(key))

    n_heads = need("attention.head_count")
    hidden = need("embedding_length")
    vocab = get("vocab_size") or len(_required(meta, "tokenizer.ggml.tokens"))
    config = {
        "hidden_size": hidden,
        "num_hidden_layers": need("block_count"),
        "intermediate_size": need("feed_forward_length"),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", n_heads)),
        "head_dim": int(get("rope.dimension_count", hidden // n_heads)),
        "vocab_size": int(vocab),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 4096)),
        # llama.cpp permutes q/k rows for interleaved RoPE when converting HF weights.
        "rope_traditional": True,
        "tie_word_embeddings": "output.weight" not in weights,
    }
    config["rope_scaling"] = rope_scaling(meta, weights, config["head_dim"], config["rope_theta"])
    return config


def _llama3_factors(scaling: dict[str, float], head_dim: int, base: float) -> np.ndarray:
    """The per-frequency divisors Llama-3 scaling implies (mlx-lm's ``Llama3RoPE`` formula)."""
    factor, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    wavelens = 2 * np.pi * base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    smooth = (old / wavelens - lo) / (hi - lo) if hi != lo else np.zeros_like(wavelens)
    medium = 1 / ((1 - smooth) / factor + smooth)
    out = np.where(wavelens > old / lo, factor, 1.0)
    return np.where((wavelens > old / hi) & (wavelens < old / lo), medium, out)


def _fit_llama3(freqs: np.ndarray, head_dim: int, base: float, old: float) -> dict[str, float]:
    """Llama-3 parameters that reproduce ``rope_freqs`` (llama.cpp stores only the factors).

    Only the thresholds old/low and old/high matter, so ``old`` is taken from the metadata (or
    HF's default) and low/high are solved from the factors between the two thresholds.
    """
    factor = float(freqs.max())
    wavelens = 2 * np.pi * base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    tol = 1e-4 * factor
    high = wavelens[np.abs(freqs - 1) <= tol]  # unscaled: short wavelengths
    low = wavelens[np.abs(freqs - factor) <= tol]  # scaled by the full factor
    mid = (np.abs(freqs - 1) > tol) & (np.abs(freqs - factor) > tol)
    w_high = high.max() if high.size else wavelens.min() / 2
    w_low = low.min() if low.size else wavelens.max() * 2
    if mid.sum() >= 2:
        # smooth s = (old/w - lo) / (hi - lo) is linear in old/w: fit intercept lo, slope hi-lo.
        s = (1 / freqs[mid] - 1 / factor) / (1 - 1 / factor)
        slope, lo = np.polyfit(s, old / wavelens[mid], 1)
        hi = lo + slope
    elif mid.sum() == 1:
        w_mid = wavelens[mid][0]
        s = (1 / freqs[mid][0] - 1 / factor) / (1 - 1 / factor)
        lo = old / np.sqrt(w_mid * w_low)  # the low threshold between w_mid and w_low
        hi = lo + (old / w_mid - lo) / s
    else:  # no smooth band: any thresholds between the unscaled and the scaled wavelengths do
        lo = old / np.sqrt(w_high * w_low)
        hi = lo * (1 + 1e-6)
    return {"factor": factor, "low_freq_factor": lo, "high_freq_factor": hi}


def rope_scaling(
    meta: dict[str, Any], weights: dict[str, mx.array], head_dim: int, base: float
) -> dict[str, Any] | None:
    """RoPE scaling as the HF ``rope_scaling`` dict mlx-lm's ``initialize_rope`` understands.

    llama.cpp writes Llama-3.1/3.2's scaling as a ``rope_freqs`` tensor (one divisor per
    frequency) and linear/YaRN/LongRoPE as ``llama.rope.scaling.*`` metadata. Llama-3 factors
    are mapped back to HF's parameters and checked to reproduce the tensor; anything else we
    cannot run faithfully fails loudly rather than silently running the wrong positions.
    """
    kind = _scalar(meta, "llama.rope.scaling.type")
    factor = _scalar(meta, "llama.rope.scaling.factor")
    old = float(_scalar(meta, "llama.rope.scaling.original_context_length") or 8192)
    if "rope_freqs.weight" in weights:
        if kind not in (None, "none", "llama3"):
            raise ModelLoadError(f"GGUF has both rope_freqs and rope scaling type {kind!r}")
        freqs = np.array(weights["rope_freqs.weight"].astype(mx.float32)).reshape(-1)
        if freqs.shape != (head_dim // 2,):
            raise ModelLoadError(
                f"GGUF rope_freqs has {freqs.size} factors, expected {head_dim // 2}"
            )
        if np.allclose(freqs, 1.0):
            return None
        candidates = [
            {
                "factor": float(factor or freqs.max()),
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
            },
            _fit_llama3(freqs.astype(np.float64), head_dim, base, old),
        ]
        for params in candidates:
            scaling = {"rope_type": "llama3", **{k: float(v) for k, v in params.items()}}
            scaling["original_max_position_embeddings"] = int(old) if old.is_integer() else old
            if np.allclose(_llama3_factors(scaling, head_dim, base), freqs, rtol=1e-4, atol=1e-5):
                return scaling
        raise ModelLoadError(
            "GGUF rope_freqs are not Llama-3 RoPE scaling; this rope type is not supported"
        )
    if kind in (None, "none") or (kind == "linear" and not factor):
        return None
    if kind == "linear":
        return {"type": "linear", "factor": float(factor)}
    raise ModelLoadError(
        f"GGUF rope scaling type {kind!r} is not supported (supported: none, linear, llama3)"
    )


# Pre-tokenizer split patterns by ``tokenizer.ggml.pre`` (llama.cpp's names).
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_PATTERN = _LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)

    def split(pattern: str) -> pre_tokenizers.PreTokenizer:
        return pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)

    if pre in ("smollm", "starcoder", "refact"):
        # Every digit on its own, then GPT-2's split.
        steps = [pre_tokenizers.Digits(individual_digits=True), split(_GPT2_PATTERN)]
    elif pre in ("llama-bpe", "llama3", "smaug-bpe", "dbrx"):
        steps = [split(_LLAMA3_PATTERN)]
    elif pre in ("qwen2", "deepseek-r1-qwen"):
        steps = [split(_QWEN2_PATTERN)]
    else:
        steps = [split(_GPT2_PATTERN)]
    return pre_tokenizers.Sequence([*steps, byte_level])


def tokenizer_from_metadata(meta: dict[str, Any]) -> Tokenizer:
    kind = _scalar(meta, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise ModelLoadError(
            f"GGUF tokenizer type {kind!r} is not supported (only byte-level BPE 'gpt2')"
        )
    tokens: list[str] = list(_required(meta, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _required(meta, "tokenizer.ggml.merges")]
    types = np.array(meta.get("tokenizer.ggml.token_type", mx.ones(len(tokens))))

    vocab = {t: i for i, t in enumerate(tokens)}
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    raw.pre_tokenizer = _pre_tokenizer(str(_scalar(meta, "tokenizer.ggml.pre", "gpt2")))
    raw.decoder = decoders.ByteLevel()
    # Control (3) and user-defined (4) tokens are matched whole in the text, never split.
    special = [
        AddedToken(tokens[i], special=int(t) == 3, normalized=False)
        for i, t in enumerate(types)
        if int(t) in (3, 4)
    ]
    raw.add_special_tokens([t for t in special if t.special])
    raw.add_tokens([t for t in special if not t.special])

    def token(key: str) -> str | None:
        tid = _scalar(meta, f"tokenizer.ggml.{key}_token_id")
        return tokens[int(tid)] if tid is not None and 0 <= int(tid) < len(tokens) else None

    hf = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=token("bos"),
        eos_token=token("eos"),
        unk_token=token("unknown"),
        pad_token=token("padding"),
        clean_up_tokenization_spaces=False,
    )
    # GGUF says whether encoding with special tokens puts a BOS first.
    if bool(_scalar(meta, "tokenizer.ggml.add_bos_token", False)) and hf.bos_token:
        bos = hf.bos_token
        hf.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, hf.bos_token_id)]
        )
    # No EOS id (as an HF config may lack one): generation stops at its token limit.
    ids = (_scalar(meta, f"tokenizer.ggml.{k}_token_id") for k in ("eos", "eot"))
    eos = {int(i) for i in ids if i is not None}
    return Tokenizer(hf, eos_token_ids=eos, chat_template=meta.get("tokenizer.chat_template"))


# Bytes per block and elements per block of the GGML tensor types we may meet.
_GGML_BLOCKS = {
    0: (4, 1),
    1: (2, 1),
    2: (18, 32),
    3: (20, 32),
    6: (22, 32),
    7: (24, 32),
    8: (34, 32),
    9: (36, 32),
    10: (84, 256),
    11: (110, 256),
    12: (144, 256),
    13: (176, 256),
    14: (210, 256),
    15: (292, 256),
    30: (2, 1),
}
# Sizes of the scalar metadata value types (8 = string and 9 = array are variable).
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def validate(path: str | Path) -> None:
    """Walk a GGUF file's header, metadata and tensor table with bounds checks.

    MLX's reader trusts the file and can crash the process on a corrupt or truncated one;
    this finds such files first and says what is wrong.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(32 << 20)  # a small file whole
    except OSError as err:
        raise ModelLoadError(f"cannot read GGUF file {path}: {err.strerror}") from err

    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(head):
            raise ModelLoadError(f"cannot read GGUF file {path}: truncated or corrupt header")
        chunk = head[pos : pos + n]
        pos += n
        return chunk

    def u32() -> int:
        return struct.unpack("<I", take(4))[0]

    def u64() -> int:
        return struct.unpack("<Q", take(8))[0]

    def skip_value(vtype: int, depth: int = 0) -> None:
        if vtype in _GGUF_SCALARS:
            take(_GGUF_SCALARS[vtype])
        elif vtype == 8:
            take(u64())
        elif vtype == 9 and depth == 0:
            etype, count = u32(), u64()
            if etype in _GGUF_SCALARS:
                take(_GGUF_SCALARS[etype] * count)
            else:
                for _ in range(count):
                    skip_value(etype, depth + 1)
        else:
            raise ModelLoadError(f"cannot read GGUF file {path}: bad metadata type {vtype}")

    if take(4) != b"GGUF":
        raise ModelLoadError(f"cannot read GGUF file {path}: not a GGUF file (bad magic)")
    version = u32()
    if version not in (2, 3):
        raise ModelLoadError(f"cannot read GGUF file {path}: unsupported version {version}")
    n_tensors, n_kv = u64(), u64()
    alignment = 32
    for _ in range(n_kv):
        key = take(u64()).decode("utf-8", "replace")
        vtype = u32()
        if key == "general.alignment" and vtype == 4:
            alignment = u32()
        else:
            skip_value(vtype)
    extents = []
    for _ in range(n_tensors):
        take(u64())  # name
        n_dims = u32()
        if n_dims > 8:
            raise ModelLoadError(f"cannot read GGUF file {path}: corrupt tensor table")
        shape = [u64() for _ in range(n_dims)]
        ttype, offset = u32(), u64()
        if ttype in _GGML_BLOCKS:
            block_bytes, block_elems = _GGML_BLOCKS[ttype]
            extents.append(offset + math.prod(shape) // block_elems * block_bytes)
    data_start = (pos + alignment - 1) // alignment * alignment
    if extents and data_start + max(extents) > size:
        raise ModelLoadError(f"cannot read GGUF file {path}: truncated (tensor data missing)")
