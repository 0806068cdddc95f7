"""``mlx_main.py --chat``: a conversation in the terminal, each answer coloured as it streams.

Every line typed is a user turn; the model answers with the whole conversation as its prompt
(the chat template). The turns share one decoder with a prefix cache, as the server's chat
does: a turn prefills only what is new since the last one (its answer and the new message).
``/reset`` starts a new conversation, ``/exit`` or Ctrl-D ends it. Ctrl-C during an answer
stops that answer (the part written stays in the conversation); at the prompt it drops the line;
between the two (the prefix cache's filling) it skips the filling. Without a terminal on stdin
every line of stdin is a turn (scripts, tests). Lines are read as UTF-8, whatever the locale.
"""

from __future__ import annotations

import argparse
import secrets
import shutil
import signal
import sys
from typing import Any, TextIO

from ..config import Mode, SamplerConfig
from ..engine.batch import BatchDecoder
from ..engine.confidence import with_abstention
from ..engine.generate import generate_rows
from ..engine.prefix_cache import PrefixCache
from ..engine.request import prepare_prompt
from ..errors import EntropixError, InvalidRequestError, encodes_unicode, first_line
from ..events import DoneEvent, ErrorEvent
from .args import as_utf8
from .interrupt import Interrupt, PromptInterrupt
from .terminal import Style, confidence_text, count, event_json, event_text, legend

PREFIX_CACHE_MB = 512  # as the server's default (--prefix-cache-mb)
HELP = "/reset: a new conversation · /exit or Ctrl-D: quit · Ctrl-C: stop an answer"


def turn_line(done: DoneEvent) -> str:
    """One line after each answer: its length, speed, the prompt reused, its confidence."""
    parts = [f"{count(done.generated_tokens, 'token')} ({done.finish_reason})",
             f"{done.decode_tok_s:.1f} tok/s"]  # fmt: skip
    if done.cached_tokens:
        parts.append(f"{done.cached_tokens} of {done.prompt_tokens} prompt tokens reused")
    if done.confidence is not None:
        abstained = " ABSTAINED" if done.abstained else ""
        parts.append(f"confidence {confidence_text(done.confidence)}{abstained}")
    return " · ".join(parts)


def read_turn(inp: TextIO, out: TextIO, interactive: bool) -> str | None:
    """The next line typed (None: end of input). At a terminal with a prompt and line editing;
    Ctrl-C there drops the line being typed. Piped, Ctrl-C ends the conversation."""
    if not interactive:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        line = inp.readline()  # a line ending, also Windows', is no part of the message
        return line.removesuffix("\n").removesuffix("\r") if line else None
    import readline  # noqa: F401  (line editing and history for input())

    signal.signal(signal.SIGINT, PromptInterrupt())
    while True:
        try:
            return input("\n> ")
        except KeyboardInterrupt:
            out.write("\n")
        except EOFError:
            out.write("\n")
            return None


def check_chat(args: argparse.Namespace, group: Any) -> None:
    """The flags a conversation cannot take, refused before the model loads."""
    for flag, given in (("--compare", args.compare), ("--plot", args.plot),
                        ("--limit", args.limit is not None)):  # fmt: skip
        if given:
            raise InvalidRequestError(f"--chat takes no {flag} (one answer per turn)")
    if group is not None:
        raise InvalidRequestError("--chat reads the terminal in one process: not under mlx.launch")


def fits(lm: Any, messages: list[dict[str, str]]) -> bool:
    """Whether ``messages`` make a prompt the model can take."""
    try:
        prepare_prompt(lm, messages, None, 1)
    except EntropixError:
        return False
    return True


def chat(
    lm: Any, args: argparse.Namespace, cfg: SamplerConfig, mode: Mode, out: TextIO,
    style: Style, first_run: Any = None, inp: TextIO | None = None,
) -> int:  # fmt: skip
    """The conversation loop; exit status 0 when the input ends."""
    inp = inp or sys.stdin
    interactive = inp.isatty() and not args.json
    system = [{"role": "system", "content": args.system}] if args.system else []
    try:  # a system message no turn can take: one error now, not one per turn
        prepare_prompt(lm, [*system, {"role": "user", "content": "?"}], None, 1)
    except EntropixError as err:
        raise type(err)(f"--system: {first_line(err)}") from err
    if hasattr(inp, "reconfigure"):  # bytes that are not UTF-8: that line's error, no traceback
        inp.reconfigure(errors="surrogateescape")
    decoder = BatchDecoder(lm, prefix_cache=PrefixCache(PREFIX_CACHE_MB * 2**20))
    if not args.json:
        out.write(style.dim(f"{lm.info.name} · {lm.info.compute_dtype} · {mode}") + "\n")
    if interactive:
        if style.colour:
            out.write(legend(style, shutil.get_terminal_size().columns) + "\n")
        out.write(style.dim(HELP) + "\n")
    given_back = signal.getsignal(signal.SIGINT)
    try:
        converse(lm, args, cfg, mode, out, style, first_run, inp, interactive, decoder, system)
    finally:  # a caller's own Ctrl-C handling again (tests call this in process)
        signal.signal(signal.SIGINT, given_back)
    if first_run is not None:
        first_run.closing_note()
    return 0


def turn_error(message: str, out: TextIO, turn: int, as_json: bool, escape: bool) -> int:
    """A turn that failed: one line on stderr, and with ``--json`` the schema's error event (a
    script's turns stay those of its lines); the next turn's number."""
    if as_json:
        out.write(event_json(ErrorEvent(message=message), escape, f'"turn":{turn},'))
    out.flush()
    print(f"error: {message}", file=sys.stderr)
    return turn + 1


def converse(
    lm: Any, args: argparse.Namespace, cfg: SamplerConfig, mode: Mode, out: TextIO,
    style: Style, first_run: Any, inp: TextIO, interactive: bool, decoder: BatchDecoder,
    system: list[dict[str, str]],
) -> None:  # fmt: skip
    """Turn after turn until the input ends or ``/exit``."""
    history: list[dict[str, str]] = []
    turn, escape = 0, not encodes_unicode(out)
    while (text := read_turn(inp, out, interactive)) is not None:
        # From here to the next prompt a Ctrl-C stops the answer (or the cache filling after
        # it), never the conversation; a second one after SAME_CTRL_C_S raises, as ever.
        interrupt = Interrupt()
        signal.signal(signal.SIGINT, interrupt)
        if not text.strip():
            continue
        if text.strip() in ("/exit", "/quit"):
            break
        if text.strip() == "/reset":
            history.clear()
            if not args.json:
                out.write(style.dim("(a new conversation)") + "\n")
            continue
        if first_run is not None:
            first_run.resume_if_ready()
        try:
            text, bad = as_utf8(text, inp.encoding or "utf-8"), None
        except InvalidRequestError as err:
            bad = err
        if not interactive and not args.json:  # what the answer answers (a terminal shows it)
            out.write(style.dim("> " + text) + "\n")
        if bad is not None:
            turn = turn_error(str(bad), out, turn, args.json, escape)
            continue
        user = {"role": "user", "content": text}
        messages = [*system, *history, user]
        seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
        done: DoneEvent | None = None
        try:
            for _, ev in generate_rows(
                lm, messages, modes=[mode], seeds=[seed], config=cfg,
                max_tokens=args.max_tokens, stop=tuple(args.stop or ()),
                top_logprobs=args.top_logprobs if args.json else 0,
                should_stop=interrupt.stop_now, decoder=decoder,
                confidence_samples=args.confidence_samples,
            ):  # fmt: skip
                if ev.type == "error":
                    raise EntropixError(ev.message)
                ev = with_abstention(ev, args.min_confidence)
                if args.json:  # which turn the event belongs to: a key first
                    out.write(event_json(ev, escape, f'"turn":{turn},'))
                elif ev.type == "done":
                    out.write("\n" + style.dim(turn_line(ev)) + "\n")
                else:
                    out.write(event_text(ev, style))
                out.flush()
                done = ev if ev.type == "done" else done
        except EntropixError as err:  # e.g. the conversation outgrew the context: the turn only
            # /reset helps only where the line alone fits
            hint = " (/reset starts anew)" if history and fits(lm, [*system, user]) else ""
            turn = turn_error(first_line(err) + hint, out, turn, args.json, escape)
            continue
        assert done is not None
        history += [user, {"role": "assistant", "content": done.text}]
        turn += 1
        # the answer's keys into the prefix cache, for the next turn (seconds, for a long
        # conversation): a Ctrl-C meanwhile skips the rest of it
        while not interrupt.requested and decoder.idle_step():
            pass
