"""Our GGUF tokenizer against transformers' own GGUF tokenizer converter, and streaming decode."""

from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")

MIXED = (
    "def área(r: float) -> float:\n\treturn 3.14159 * r ** 2  # héllo, wörld! 日本語 🤖\n"
    "<|im_start|>user\nWhat's   up?<|im_end|>\n  <|endoftext|> don't I'll you're  \r\n"
)


def transformers_view(path):
    """transformers' GGUF tokenizer, fed from the `gguf` reader (its own reader needs torch)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING,
        convert_gguf_tokenizer,
    )

    reader = gguf.GGUFReader(str(path))

    def value(key):
        field = reader.fields[key]
        return field.contents()

    tok = {}
    for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items():
        if f"tokenizer.{key}" in reader.fields:
            tok[name] = value(f"tokenizer.{key}")
    backend, _ = convert_gguf_tokenizer("llama", tok)
    return PreTrainedTokenizerFast(tokenizer_object=backend), tok


@pytest.fixture(scope="module")
def reference(embedded):
    from mlx_entropix.io.load import embedded_model_path

    return transformers_view(embedded_model_path())


def test_same_ids_as_transformers_on_mixed_text(embedded, reference):
    ref, _ = reference
    ours = embedded.tokenizer
    ids = ours.encode(MIXED)
    assert ids == ref.encode(MIXED, add_special_tokens=False)
    assert ours.decode(ids) == ref.decode(ids) == MIXED
    # Special tokens stay whole.
    assert ours.encode("<|im_start|>") == [1] and ours.encode("<|im_end|>") == [2]


def test_digits_split_like_llama_cpp(embedded, reference):
    """`tokenizer.ggml.pre = smollm`: llama.cpp (and SmolLM2's own tokenizer.json) split every
    digit apart before BPE; we do the same (transformers' converter has no "smollm" entry and
    keeps GPT-2's split, which this vocabulary, having no multi-digit tokens, undoes anyway)."""
    ours = embedded.tokenizer
    ids = ours.encode("1234 and 9.11")
    digit_ids = [ours.encode(d)[0] for d in "1234"]
    assert ids[:4] == digit_ids
    assert ours.decode(ids) == "1234 and 9.11"


def test_chat_template_and_stop_ids(embedded):
    tok = embedded.tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert {2} <= tok.eos_token_ids  # <|im_end|>
    assert tok.token_id(" ...") is not None


@pytest.mark.parametrize("text", [MIXED, "naïve café 🤖🤖 — ok", "x" * 50])
def test_streaming_pieces_concatenate_to_decode(embedded, text):
    tok = embedded.tokenizer
    ids = tok.encode(text)
    detok = tok.detokenizer()
    pieces = [detok.add_token(i) for i in ids]
    pieces.append(detok.finalize())
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)


def test_a_template_that_refuses_the_messages_is_a_request_error():
    """Gemma's template raises on a system message (and on roles out of turn): one line for
    the CLI (exit 2) and a 400 for the server, not a jinja2 traceback / 500."""
    from mlx_entropix.errors import InvalidRequestError
    from mlx_entropix.io.gguf import tokenizer_from_metadata
    from mlx_entropix.io.load import embedded_model_path

    import mlx.core as mx

    meta = mx.load(str(embedded_model_path()), return_metadata=True)[1]
    tok = tokenizer_from_metadata(meta)
    tok.hf.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    )
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}])  # allowed: renders
    with pytest.raises(InvalidRequestError, match="refuses these messages: System role not"):
        tok.apply_chat_template(
            [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]
        )
