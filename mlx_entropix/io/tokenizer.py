"""Tokenizer wrapper: one interface over Hugging Face fast tokenizers, however they were built.

Holds encode/decode, the chat template (rendered by transformers), the set of ids that end a
turn, and a streaming detokenizer whose pieces always concatenate to ``decode(all ids)``.

User text stays text: message contents are tokenized with special-token strings treated as
plain text (``<|im_end|>`` typed by a user is the characters, never the control id), so only
the chat template itself produces control ids and nobody can forge a system or assistant turn.
"""

from __future__ import annotations

import re
import secrets
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

    def encode_text(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Untrusted text: special-token strings in it are split like any other text."""
        return self.hf.encode(
            text, add_special_tokens=add_special_tokens, split_special_tokens=True
        )

    @property
    def control_ids(self) -> set[int]:
        """Ids of the special (control) tokens: only the template may produce them."""
        return {i for i, t in self.hf.added_tokens_decoder.items() if t.special}

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        if not self.has_chat_template:
            # Base models: plain concatenation of the message contents.
            text = "\n\n".join(str(m.get("content", "")) for m in messages)
            return self.encode_text(text, add_special_tokens=True)
        text, spans = self._render(messages, add_generation_prompt)
        enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        control = self.control_ids
        forged = any(
            a < end and start < b
            for tid, (a, b) in zip(ids, offsets, strict=True)
            if tid in control
            for start, end in spans
        )
        if not forged:
            return ids  # the common case: exactly the tokens of the rendered template
        # Some content holds (part of) a special-token string: the template's own pieces are
        # encoded with special tokens, the contents with none.
        out: list[int] = []
        pos = 0
        for start, end in [*spans, (len(text), len(text))]:
            if start > pos:
                out += self.encode(text[pos:start])
            if end > start:
                out += self.encode_text(text[start:end])
            pos = end
        return out

    def _render(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool
    ) -> tuple[str, list[tuple[int, int]]]:
        """The template's text and the character spans in it that are message contents.

        Rendered once with a unique marker per content to find where contents go, and once
        with the real contents to check the result; a template that trims the content (Llama
        3's) is matched too.
        """
        tag = secrets.token_hex(6)
        marks = [f"\ue000{tag}{i}\ue001" for i in range(len(messages))]
        marked = [{**m, "content": mark} for m, mark in zip(messages, marks, strict=True)]

        def render(msgs: list[dict[str, Any]]) -> str:
            return self.hf.apply_chat_template(
                msgs, add_generation_prompt=add_generation_prompt, tokenize=False
            )

        real = render(messages)
        # One short pattern (an alternation of every marker took 4 ms to compile at 20 turns)
        parts = re.split(f"(\ue000{tag}\\d+\ue001)", render(marked))
        contents = [str(m.get("content", "")) for m in messages]
        for fit in (str.strip, lambda c: c):  # the last one is also the fallback
            text, spans = "", []
            for k, part in enumerate(parts):
                if k % 2:  # a marker: the content of message i
                    piece = fit(contents[int(part[1 + len(tag) : -1])])
                    spans.append((len(text), len(text) + len(piece)))
                    text += piece
                else:
                    text += part
            if text == real:
                break
        # A template that changes contents in another way gets them as they were sent.
        return text, spans

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
