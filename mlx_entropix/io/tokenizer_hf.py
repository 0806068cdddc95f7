"""Tokenizers of Hugging Face / MLX checkpoint directories (tokenizer.json + config files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from .tokenizer import Tokenizer


def _eos_ids(path: Path, config: dict[str, Any]) -> set[int]:
    ids: set[int] = set()
    sources = [config]
    gen = path / "generation_config.json"
    if gen.exists():
        try:
            sources.append(json.loads(gen.read_text()))
        except (OSError, json.JSONDecodeError):
            pass
    for src in sources:
        value = src.get("eos_token_id")
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return ids


def load_hf_tokenizer(path: Path, config: dict[str, Any]) -> Tokenizer:
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # transformers raises many types for a bad or missing tokenizer
        raise ModelLoadError(f"cannot load the tokenizer in {path}: {err}") from err
    template = None
    jinja = path / "chat_template.jinja"
    if not getattr(hf, "chat_template", None) and jinja.exists():
        template = jinja.read_text()
    return Tokenizer(hf, eos_token_ids=_eos_ids(path, config), chat_template=template)
