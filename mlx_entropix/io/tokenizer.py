"""Tokenizer wrapper: one interface over Hugging Face fast tokenizers, however they were built.

Holds encode/decode, the chat template (rendered by transformers), the set of ids that end a
turn, and a streaming detokenizer whose pieces always concatenate to ``decode(all ids)``.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerFast


class StreamingDetokenizer:
    """Text pieces per token that concatenate exactly to the full decode.

    Decoding ids one by one breaks multi-byte characters and, for SentencePiece vocabularies,
    leading spaces. So decode a short window of recent ids twice (with and without the new
    one) and emit the difference; hold back while the text ends in an incomplete character.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerFast):
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # ids up to here are already emitted

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def add_token(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # wait for the rest of a multi-byte character
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def finalize(self) -> str:
        """The text still held back (an incomplete character at the very end)."""
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return after[len(before) :]


class Tokenizer:
    def __init__(
        self,
        hf: PreTrainedTokenizerFast,
        eos_token_ids: set[int] | None = None,
        chat_template: str | None = None,
    ):
        self.hf = hf
        if chat_template is not None:
            hf.chat_template = chat_template
        ids = set(eos_token_ids or ())
        if hf.eos_token_id is not None:
            ids.add(hf.eos_token_id)
        # Chat models end a turn with their own marker; stop on it too when the vocab has it.
        for marker in ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>"):
            tid = hf.convert_tokens_to_ids(marker)
            if isinstance(tid, int) and tid != hf.unk_token_id and tid is not None:
                ids.add(tid)
        self.eos_token_ids = ids
        self._texts: dict[int, str] = {}  # id_to_text per id: every event shows 5 alternatives

    @property
    def vocab_size(self) -> int:
        return len(self.hf)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.hf.chat_template)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.hf.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        if not self.has_chat_template:
            # Base models: plain concatenation of the message contents.
            text = "\n\n".join(str(m.get("content", "")) for m in messages)
            return self.encode(text, add_special_tokens=True)
        text = self.hf.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return self.encode(text)

    def token_id(self, text: str) -> int | None:
        """The id of ``text`` if it is exactly one token, else None."""
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def id_to_text(self, token_id: int) -> str:
        text = self._texts.get(token_id)
        if text is None:
            text = self._texts[token_id] = self.decode([token_id])
        return text

    def detokenizer(self) -> StreamingDetokenizer:
        return StreamingDetokenizer(self.hf)
