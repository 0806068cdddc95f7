"""GGUF metadata that is incomplete: a clear ``ModelLoadError`` naming the missing key, never a
TypeError/KeyError traceback; an optional key (the EOS id) missing still loads."""

from __future__ import annotations

from mlx_entropix.errors import ModelLoadError
from mlx_entropix.io.gguf import config_from_metadata, tokenizer_from_metadata
from mlx_entropix.io.load import embedded_model_path

import mlx.core as mx
import pytest


@pytest.fixture(scope="module")
def meta():
    return mx.load(str(embedded_model_path()), return_metadata=True)[1]


@pytest.mark.parametrize(
    "key",
    ["llama.attention.head_count", "llama.embedding_length", "llama.block_count",
     "llama.feed_forward_length"],
)  # fmt: skip
def test_a_missing_model_size_names_the_key(meta, key):
    broken = {k: v for k, v in meta.items() if k != key}
    with pytest.raises(ModelLoadError, match=f"no {key}"):
        config_from_metadata(broken, {})
    assert config_from_metadata(meta, {})["num_hidden_layers"] == 30  # the intact file builds


@pytest.mark.parametrize("key", ["tokenizer.ggml.tokens", "tokenizer.ggml.merges"])
def test_a_missing_vocabulary_names_the_key(meta, key):
    broken = {k: v for k, v in meta.items() if k not in (key, "llama.vocab_size")}
    with pytest.raises(ModelLoadError, match=f"no {key}"):
        config_from_metadata(broken, {})
        tokenizer_from_metadata(broken)


def test_a_tokenizer_without_an_eos_id_loads(meta):
    """Like an HF config without ``eos_token_id``: generation stops at the chat markers the
    vocab has, or at its token limit."""
    broken = {k: v for k, v in meta.items() if k != "tokenizer.ggml.eos_token_id"}
    tok = tokenizer_from_metadata(broken)
    assert tok.hf.eos_token is None
    assert tok.eos_token_ids == {tok.hf.convert_tokens_to_ids("<|im_end|>")}  # a chat marker
    assert tok.decode(tok.encode("hello world")) == "hello world"
