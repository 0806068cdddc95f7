"""Tokenizer wrapper: one interface over Hugging Face fast tokenizers, however they were built.

User text stays text: message contents are tokenized with special-token strings treated as
plain text (``<|im_end|>`` typed by a user is the characters, never the control id), so only
the chat template itself produces control ids and nobody can forge a system or assistant turn.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from typing import Any

from jinja2 import TemplateError
from transformers import PreTrainedTokenizerFast

from ..errors import InvalidRequestError, first_line


class StreamingDetokenizer:
    """Text pieces per token that concatenate exactly to the full decode.

    Decoding ids one by one breaks multi-byte characters and, for SentencePiece vocabularies,
    leading spaces. So decode a short window of recent ids twice (with and without the new
    one) and emit the difference; hold back while the text ends in an incomplete character.
    """

    def __init__(self, tokenizer: Tokenizer):
        self._tok = tokenizer
        self.ids: list[int] = []
        self._prefix = 0  # window start
        self._read = 0  # ids up to here are already emitted

    def add_token(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._tok.decode(self.ids[self._prefix : self._read])
        after = self._tok.decode(self.ids[self._prefix :])
        if after.endswith("\ufffd") or len(after) <= len(before):
            return ""  # wait for the rest of a multi-byte character
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def finalize(self) -> str:
        """The text still held back (an incomplete character at the very end)."""
        before = self._tok.decode(self.ids[self._prefix : self._read])
        after = self._tok.decode(self.ids[self._prefix :])
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
            if isinstance(tid, int) and tid != hf.unk_token_id:
                ids.add(tid)
        self.eos_token_ids = ids
        self._texts: dict[int, str] = {}  # id_to_text per id: every event shows 5 alternatives
        # Ids of the special (control) tokens: only the template may produce them.
        self.control_ids = {i for i, t in hf.added_tokens_decoder.items() if t.special}
        self._rendered = _RenderedTexts(self)

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

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids (special-token strings as their ids) and each one's character span."""
        enc = self.hf(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True
    ) -> list[int]:
        if not self.has_chat_template:
            # Base models: plain concatenation of the message contents.
            text = "\n\n".join(str(m.get("content", "")) for m in messages)
            return self.encode_text(text, add_special_tokens=True)
        text, spans = self._render(messages, add_generation_prompt)
        ids, offsets = self._rendered.encode(text)
        forged = any(
            a < end and start < b
            for tid, (a, b) in zip(ids, offsets, strict=True)
            if tid in self.control_ids
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
            try:
                return self.hf.apply_chat_template(
                    msgs, add_generation_prompt=add_generation_prompt, tokenize=False
                )
            except TemplateError as err:  # raise_exception(...): e.g. Gemma's, given a system
                raise InvalidRequestError(
                    f"the model's chat template refuses these messages: {first_line(err)}"
                ) from err

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
        return StreamingDetokenizer(self)


class _RenderedTexts:
    """Encodes rendered templates, reusing the tokens of recent ones they start with.

    Every turn of a conversation resends the whole history: its rendered text starts with the
    last request's. A fast tokenizer splits its input at special tokens first and encodes the
    pieces between them on their own, so the tokens up to the last special token both texts
    share are those of the earlier encoding (a 1,800-token history: 9 -> 1 ms). Checked once
    per tokenizer on a probe; a tokenizer whose pieces depend on their place in the text (a
    SentencePiece prefix space only on the first piece) always encodes the whole text.
    """

    KEEP = 8  # rendered texts kept (a few conversations at once)

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.kept: OrderedDict[str, tuple[list[int], list[tuple[int, int]]]] = OrderedDict()
        self.exact: bool | None = None  # the probe's verdict, on first use

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        if self.exact is None:
            self.exact = self._probe()
        out = (self._reused(text) if self.exact else None) or self.tok.encode_offsets(text)
        if self.exact:
            self.kept[text] = out
            self.kept.move_to_end(text)
            while len(self.kept) > self.KEEP:
                self.kept.popitem(last=False)
        return out

    def _reused(self, text: str) -> tuple[list[int], list[tuple[int, int]]] | None:
        best: tuple[int, int, list[int], list[tuple[int, int]]] | None = None  # (cut, j, ...)
        for old, (ids, offsets) in self.kept.items():
            shared = _common_prefix(old, text)
            # the last special token that ends inside the shared text
            control = self.tok.control_ids
            j = next((j for j in range(len(ids) - 1, -1, -1)
                      if ids[j] in control and offsets[j][1] <= shared), -1)  # fmt: skip
            if j >= 0 and (best is None or offsets[j][1] > best[0]):
                best = (offsets[j][1], j, ids, offsets)
        if best is None:
            return None
        cut, j, ids, offsets = best
        more, spans = self.tok.encode_offsets(text[cut:])
        return ids[: j + 1] + more, offsets[: j + 1] + [(a + cut, b + cut) for a, b in spans]

    def _probe(self) -> bool:
        """Whether encoding after a special token gives the whole text's tokens."""
        if not self.tok.control_ids or not self.tok.has_chat_template:
            return False
        turns = [{"role": "user", "content": " Hello there,  friend!\n\tHow are you?"},
                 {"role": "assistant", "content": "Fine. 12 + 3 = 15 ."},
                 {"role": "user", "content": "  Naïve café?"}]  # fmt: skip
        try:
            text = self.tok.hf.apply_chat_template(turns, add_generation_prompt=True,
                                                   tokenize=False)  # fmt: skip
        except Exception:  # a template that rejects these turns: no reuse
            return False
        ids, offsets = self.tok.encode_offsets(text)
        cuts = [(j, offsets[j][1]) for j, t in enumerate(ids) if t in self.tok.control_ids]
        for j, cut in cuts[:-1]:
            more, spans = self.tok.encode_offsets(text[cut:])
            if ids[j + 1 :] != more or offsets[j + 1 :] != [(a + cut, b + cut) for a, b in spans]:
                return False
        return bool(cuts)


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (binary search over C-level slice compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
