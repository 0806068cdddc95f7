"""Prompt sets from CSV: the built-in ``data/prompts.csv`` or a user's file.

Columns: ``prompt`` (required), ``name``, ``category``, ``answer`` (optional). Shared by the CLI
(``--prompts``, ``--prompt_csv``) and the server (``GET /api/prompts``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import BaseModel

from ..errors import InvalidRequestError

BUILTIN_PROMPTS_PATH = Path(__file__).resolve().parents[1] / "data" / "prompts.csv"


class PromptItem(BaseModel):
    name: str
    category: str = ""
    prompt: str
    answer: str | None = None


def load_prompts(path: str | Path | None = None) -> list[PromptItem]:
    """Read a prompt CSV (default: the built-in set). Bad files raise ``InvalidRequestError``."""
    path = Path(path) if path is not None else BUILTIN_PROMPTS_PATH
    if path.is_dir():
        raise InvalidRequestError(f"prompt CSV is a directory, not a file: {path}")
    if not path.exists():  # not is_file(): a pipe is read too (/dev/stdin, <(...) in a shell)
        raise InvalidRequestError(f"prompt CSV not found: {path}")
    try:
        # utf-8-sig: spreadsheets often save a BOM, which would otherwise rename the first column.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [(h or "").strip().lower() for h in reader.fieldnames or []]
            rows = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidRequestError(f"cannot read prompt CSV {path}: {err}") from err
    if "prompt" not in header:
        found = ", ".join(repr(h) for h in header if h) or "none"
        raise InvalidRequestError(
            f"prompt CSV {path} has no 'prompt' column (columns found: {found})"
        )
    items = []
    for line, row in rows:
        # Normalise header case/spacing; DictReader puts surplus cells under the key None.
        cells = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not cells.get("prompt"):
            raise InvalidRequestError(f"prompt CSV {path}, line {line}: empty prompt")
        items.append(
            PromptItem(
                name=cells.get("name") or f"prompt{len(items) + 1}",
                category=cells.get("category", ""),
                prompt=cells["prompt"],
                answer=cells.get("answer") or None,
            )
        )
    if not items:
        raise InvalidRequestError(f"prompt CSV {path} has no prompts")
    return items
