"""``mlx_main.py``'s command line: its flags and the types that check them as they are read
(``main.py`` runs them)."""

from __future__ import annotations

import argparse
import math
import sys

from ..config import PRESET_NAMES
from ..errors import InvalidRequestError
from ..io.prompts import BUILTIN_PROMPTS_PATH

PROG = "mlx_main.py"


def probability(text: str) -> float:
    """A threshold in [0, 1] from a command line (argparse ``type``)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{text} is not in [0, 1]")
    return value


def finite(text: str) -> float:
    """A finite number from a command line (argparse ``type``): NaN or an infinity was let
    through to the config, whose message named a bound ("less than or equal to 10")."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Generate with entropix sampling: every token coloured by the model's "
        "uncertainty quadrant, with a summary per run. Exit status: 0 ok, 2 bad input, "
        "1 stdout not writable or the model failed (NaN/inf logits), 130 interrupted (Ctrl-C; "
        "the summary of what was generated is still printed).",
    )
    src = p.add_argument_group("prompt (one of; default: the 9.9 vs 9.11 question)")
    one = src.add_mutually_exclusive_group()
    one.add_argument("--input", metavar="TEXT", help="one prompt (a user message)")
    one.add_argument("--prompts", action="store_true", help="the built-in prompt set")
    one.add_argument(
        "--prompt_csv",
        "--prompt-csv",
        nargs="?",
        const=str(BUILTIN_PROMPTS_PATH),
        metavar="PATH",
        help="prompts from a CSV with a 'prompt' column "
        "(no PATH: the built-in set, mlx_entropix/data/prompts.csv)",
    )
    one.add_argument(
        "--chat", action="store_true", help="a conversation: each line typed is a user turn"
    )
    src.add_argument("--limit", type=int, metavar="N", help="only the first N prompts of a set")
    src.add_argument("--system", metavar="TEXT", help="system message")

    mode = p.add_argument_group("sampling")
    which = mode.add_mutually_exclusive_group()
    which.add_argument("--normal", action="store_true", help="normal sampling (fixed T/top-p/k)")
    which.add_argument("--greedy", action="store_true", help="greedy decoding (argmax)")
    which.add_argument(
        "--compare",
        action="store_true",
        help="entropix and normal as one batch of two rows, same prompt and seed",
    )
    which.add_argument(
        "--fork",
        action="store_true",
        help="greedy, but explore the top candidates at forks and keep the most confident "
        "branch (fork_* settings in --config)",
    )
    mode.add_argument("--model", metavar="PATH_OR_ID", help="GGUF file, HF/MLX dir or repo id")
    mode.add_argument(
        "--max-tokens", type=int, default=256, metavar="N", help="default: %(default)s"
    )
    mode.add_argument(
        "--seed", type=int, metavar="N", help="default: random (reported in the summary)"
    )
    mode.add_argument("--config", metavar="FILE", help="SamplerConfig as JSON or TOML")
    mode.add_argument("--preset", metavar="NAME", help="preset: " + ", ".join(PRESET_NAMES))
    mode.add_argument("--temperature", type=finite, metavar="T", help="base T (normal: fixed)")
    mode.add_argument("--top-p", type=finite, metavar="P", help="base top-p (normal: fixed)")
    mode.add_argument("--top-k", type=int, metavar="K", help="base top-k (normal: fixed)")
    mode.add_argument("--min-p", type=finite, metavar="P", help="base min-p (normal: fixed)")
    mode.add_argument("--stop", action="append", metavar="TEXT", help="stop string (repeatable)")
    mode.add_argument(
        "--shard-attention",
        choices=("auto", "shard", "replicate"),
        default="auto",
        help="under mlx.launch (docs/DISTRIBUTED.md): split attention heads over the ranks "
        "(auto: when the kv heads divide; shard: an error when they do not)",
    )

    out = p.add_argument_group("output")
    out.add_argument(
        "--json",
        action="store_true",
        help="one JSON event per line (wire schema); with several prompts each line also "
        "carries 'prompt_index' (0-based)",
    )
    out.add_argument("--top-logprobs", type=int, default=5, metavar="N", help="alternatives (JSON)")
    out.add_argument("--plot", metavar="PATH", help="PNG of entropy/varentropy per token")
    out.add_argument("--min-confidence", type=probability, metavar="P",
                     help="mark an answer with a confidence below P an abstention")  # fmt: skip
    out.add_argument("--confidence-samples", type=int, metavar="K",
                     help="K hidden rows sampled beside the answer: their agreement with it is "
                     "reported (default 0; 4 measured: README)")  # fmt: skip
    out.add_argument("--info", action="store_true", help="device, BLAS, dtype and model info")
    out.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="default: auto"
    )
    return p


def as_utf8(text: str, encoding: str, what: str = "the line") -> str:
    """``text`` read with ``surrogateescape`` as UTF-8 (what terminals and files send, whatever
    the locale's codec says), or a clear error naming the first byte that is not UTF-8."""
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    raw = text.encode(encoding, "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidRequestError(
            f"{what} is not valid UTF-8 (byte 0x{raw[err.start]:02X} at byte {err.start})"
        ) from None


def argv_text(args: argparse.Namespace) -> None:
    """``--input`` and ``--system`` as UTF-8: argv's bytes that are not (escaped as for a file
    name) are one clear error naming the byte, not a "lone surrogate" deep in the engine."""
    for flag in ("input", "system"):
        if (value := getattr(args, flag)) is not None:
            setattr(args, flag, as_utf8(value, sys.getfilesystemencoding(), f"--{flag}"))
