"""User-facing errors: each carries one clear line; front ends print it without a traceback."""

from __future__ import annotations

import os
from pathlib import Path


class EntropixError(Exception):
    """Base class: ``str(err)`` is a complete, user-readable one-line message."""


class ModelLoadError(EntropixError):
    """Weights path missing, unreadable, corrupt, or of an unknown format."""


class PromptTooLongError(EntropixError):
    """The prompt (plus at least one generated token) does not fit the model's context."""


class InvalidRequestError(EntropixError):
    """A request or argument that cannot be served as given (empty prompt, bad range...)."""


def first_line(err: BaseException) -> str:
    """An exception's message cut to its first non-empty line (else the exception's type):
    libraries' long messages as one of ours."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_writable(path: Path, what: str) -> None:
    """An output file that cannot be written fails before the work, not after it (its results
    lost in a traceback): a parent that cannot be made (it is made here, as the writer would),
    a directory in the file's place, a directory without write permission."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidRequestError(f"cannot write {what} {path}: {first_line(err)}") from err
    if path.is_dir():
        raise InvalidRequestError(f"cannot write {what} {path}: it is a directory")
    if not os.access(path.parent, os.W_OK):
        raise InvalidRequestError(f"cannot write {what} {path}: its directory is not writable")
