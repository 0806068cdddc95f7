"""Prompt CSV loading: the built-in set and every bad-file case."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mlx_entropix.errors import InvalidRequestError
from mlx_entropix.io.prompts import BUILTIN_PROMPTS_PATH, PromptItem, load_prompts

import pytest


def test_builtin_set_is_documented_and_varied():
    items = load_prompts()
    assert BUILTIN_PROMPTS_PATH.name == "prompts.csv" and BUILTIN_PROMPTS_PATH.is_file()
    assert all(isinstance(i, PromptItem) and i.prompt for i in items)
    assert len({i.name for i in items}) == len(items)
    assert {"arithmetic", "trick", "reasoning", "factual", "writing"} <= {i.category for i in items}
    first = items[0]
    assert first.prompt == "Which number is larger, 9.9 or 9.11?" and first.answer == "9.9"
    assert any(i.answer is None for i in items)  # open writing has no expected answer
    assert load_prompts(str(BUILTIN_PROMPTS_PATH)) == items


def test_only_a_prompt_column_is_required(tmp_path: Path):
    path = tmp_path / "p.csv"
    # A BOM, odd header case and a quoted multi-line prompt are all fine.
    path.write_text('\ufeffPrompt,extra\nhello,x\n"two\nlines",y\n', encoding="utf-8")
    items = load_prompts(path)
    assert [(i.name, i.category, i.prompt, i.answer) for i in items] == [
        ("prompt1", "", "hello", None),
        ("prompt2", "", "two\nlines", None),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("name,text\na,hello\n", "no 'prompt' column (columns found: 'name', 'text')"),
        ("", "no 'prompt' column (columns found: none)"),
        ("prompt\n", "has no prompts"),
        ("name,prompt\na,hi\nb,  \n", "line 3: empty prompt"),
        (b"prompt\n\xff\xfe\xfa\n", "cannot read prompt CSV"),
    ],
)
def test_bad_files_raise_one_clear_line(tmp_path: Path, content, message):
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InvalidRequestError) as err:
        load_prompts(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_directory_is_not_a_csv(tmp_path: Path):
    with pytest.raises(InvalidRequestError, match="is a directory"):
        load_prompts(tmp_path)


def test_a_pipe_is_read(tmp_path: Path):
    # Found by use: `... | mlx_main.py --prompt_csv /dev/stdin` (or a shell's <(...)) said
    # "prompt CSV not found"; benchmarks/eval.py reads the same pipe.
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=("prompt\nSay hi\n",), daemon=True)
    writer.start()
    try:
        assert [i.prompt for i in load_prompts(fifo)] == ["Say hi"]
    finally:
        writer.join(timeout=5)
