"""User-facing errors: each carries one clear line; front ends print it without a traceback."""

from __future__ import annotations

import os
import sys
from pathlib import Path


class EntropixError(Exception):
    """Base class: ``str(err)`` is a complete, user-readable one-line message."""


class ModelLoadError(EntropixError):
    """Weights path missing, unreadable, corrupt, or of an unknown format."""


class PromptTooLongError(EntropixError):
    """The prompt (plus at least one generated token) does not fit the model's context."""


class InvalidRequestError(EntropixError):
    """A request or argument that cannot be served as given (empty prompt, bad range...)."""


class GenerationError(EntropixError):
    """The model failed during a generation (its logits were NaN or infinite): that request
    ends (an ``ErrorEvent``), the others in its batch go on."""


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


def lenient_stdout() -> None:
    """A stdout whose encoding lacks a character (``PYTHONIOENCODING=ascii``, a C locale without
    Python's UTF-8 mode) prints it as '?', as terminal tools do, instead of ending the run in a
    UnicodeEncodeError (stderr already escapes them)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


def encodes_unicode(stream: object) -> bool:
    """Whether ``stream``'s encoding writes every character (UTF-8 does; ASCII, Latin-1 do not)."""
    try:
        "\U0010ffff".encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def output_failed(prog: str, err: OSError) -> int:
    """A front end's exit after stdout failed. A reader gone (``| head``): quietly, 0, as
    ``cat`` ends on SIGPIPE; a full disk or another error: one line on stderr, 1. A stdout that
    still fails then points at /dev/null, so the interpreter's closing flush of the unwritten
    text cannot raise again (a traceback, exit 120); one that works keeps what it holds."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if isinstance(err, BrokenPipeError):
        return 0
    why = err.strerror or first_line(err)
    print(f"{prog}: error: {f'{err.filename}: ' if err.filename else ''}{why}", file=sys.stderr)
    return 1
