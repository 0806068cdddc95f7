"""User-facing errors: each carries one clear line; front ends print it without a traceback."""


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
