"""``mlx_main.py``: prompt, compare and inspect entropix from the terminal.

Exit status: 0 done; 2 bad input (argparse errors, missing/invalid CSV or config, empty prompt,
``--max-tokens`` < 1, prompt longer than the context, model that cannot be loaded, a ``--plot``
path that cannot be written), printed as one ``mlx_main.py: error: ...`` line on stderr; 1 stdout
could not be written (a full disk; a reader gone, ``| head``, is 0 and quiet) or the model failed
mid-generation (non-finite logits: the text so far, then the error), one line too; 130
interrupted by Ctrl-C (SIGINT) after the summary of what was generated so far (``finish_reason``
"cancelled").
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ..config import MAX_SEED, Mode, SamplerConfig, apply_preset, config_file_error, first_error
from ..engine.agreement import MAX_SAMPLES
from ..engine.confidence import with_abstention
from ..errors import (
    EntropixError,
    GenerationError,
    InvalidRequestError,
    check_writable,
    encodes_unicode,
    first_line,
    lenient_stdout,
    output_failed,
)
from ..events import ErrorEvent
from ..io.prompts import PromptItem, load_prompts
from .args import PROG, argv_text, build_parser

DEFAULT_PROMPT = "Which number is larger, 9.9 or 9.11?"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def select_prompts(args: argparse.Namespace) -> list[PromptItem]:
    if args.input is not None:
        items = [PromptItem(name="input", prompt=args.input)]
    elif args.prompts or args.prompt_csv is not None:  # --prompts: the built-in set
        items = load_prompts(args.prompt_csv)
    else:
        items = [PromptItem(name="default", category="arithmetic", prompt=DEFAULT_PROMPT)]
    if args.limit is not None:
        if args.limit < 1:
            raise InvalidRequestError(f"--limit must be at least 1 (got {args.limit})")
        items = items[: args.limit]
    for item in items:  # before the (slow) model load
        if not item.prompt.strip():
            where = f"prompt {item.name!r}: " if len(items) > 1 else ""
            raise InvalidRequestError(f"{where}the prompt is empty")
    return items


def read_config(args: argparse.Namespace, default: Callable[[], SamplerConfig]) -> SamplerConfig:
    """--config FILE (or the model's default), then the --temperature/... overrides."""
    if args.config:
        try:
            cfg = SamplerConfig.from_file(args.config)
        except FileNotFoundError as err:
            raise InvalidRequestError(f"config file not found: {args.config}") from err
        except (OSError, ValueError) as err:  # a rejected value, JSON/TOML syntax, unreadable
            why = config_file_error(err)
            raise InvalidRequestError(f"invalid config {args.config}: {why}") from err
    else:
        cfg = default()
    try:  # the preset's overrides, then the command line's
        cfg = apply_preset(cfg, args.preset)
    except ValueError as err:  # an unknown name: the choices are in the message
        raise InvalidRequestError(str(err)) from err
    names = ("temperature", "top_p", "top_k", "min_p")
    overrides = {k: getattr(args, k) for k in names if getattr(args, k) is not None}
    try:
        return cfg.merged(overrides)
    except ValidationError as err:
        why = first_error(err, "config")
        raise InvalidRequestError(f"invalid sampling parameter: {why}") from err


def modes_for(args: argparse.Namespace) -> list[Mode]:
    if args.compare:
        return ["entropix", "normal"]
    return [next((m for m in ("normal", "greedy", "fork") if getattr(args, m)), "entropix")]


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.max_tokens < 1:
        raise InvalidRequestError(f"--max-tokens must be at least 1 (got {args.max_tokens})")
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:  # as the server's: -1 is no
        raise InvalidRequestError(  # "random" here (it was a fixed seed the server refuses)
            f"--seed must lie in [0, 2^63 - 1] (got {args.seed}; leave it out for a random one)"
        )
    if not 0 <= args.top_logprobs <= 20:
        raise InvalidRequestError(f"--top-logprobs must lie in [0, 20] (got {args.top_logprobs})")
    if args.confidence_samples is not None and not 0 <= args.confidence_samples <= MAX_SAMPLES:
        raise InvalidRequestError(
            f"--confidence-samples must lie in [0, {MAX_SAMPLES}] (got {args.confidence_samples})"
        )
    argv_text(args)
    generating = args.chat or not (
        args.info and args.input is None and not args.prompts and not args.prompt_csv
    )
    items = select_prompts(args) if generating and not args.chat else []
    if args.config or args.preset:  # fail on a bad file or name before the model load
        read_config(args, SamplerConfig)
    if args.plot and generating:  # last: it makes the plot's directory
        check_writable(Path(args.plot), "the plot")

    from ..engine.generate import generate_batch, prepare_prompt
    from ..io.load import load
    from ..io.warmup import FirstRun
    from ..runtime.distributed import init_group
    from .chat import chat, check_chat
    from .interrupt import Interrupt
    from .terminal import (
        Style,
        compare_table,
        event_json,
        event_text,
        header,
        legend,
        print_info,
        prompts_table,
    )

    # Under mlx.launch every rank runs this same loop; only rank 0 writes (see main()).
    group = init_group()
    if args.chat:
        check_chat(args, group)
    lm = load(args.model, group=group, attention=args.shard_attention)
    if args.info:
        print_info(lm, out, args.json)
    if not generating:
        return EXIT_OK
    cfg = read_config(args, lambda: lm.default_config)
    if args.chat:
        style = Style.for_stream(out, args.color)
        return chat(lm, args, cfg, modes_for(args)[0], out, style, FirstRun.start(lm, args.model))
    for item in items:  # every prompt is checked before anything is generated
        try:
            prepare_prompt(lm, item.prompt, args.system, args.max_tokens)
        except EntropixError as err:
            where = f"prompt {item.name!r}: " if len(items) > 1 else ""
            raise type(err)(f"{where}{err}") from err

    first_run = FirstRun.start(lm, args.model)  # a cold kernel cache: uncompiled meanwhile
    style = Style.for_stream(out, args.color)
    modes = modes_for(args)
    interrupt = Interrupt(group)
    signal.signal(signal.SIGINT, interrupt)
    if not args.json:
        out.write(style.dim(f"{lm.info.name} · {lm.info.compute_dtype}") + "\n")
        if style.colour:
            out.write(legend(style, shutil.get_terminal_size().columns) + "\n")
    many = len(items) > 1
    plots = []
    if args.plot:
        from .plot import plot_paths

        plots = plot_paths(Path(args.plot), [item.name for item in items])
    finished: list[tuple[str, Any]] = []  # (prompt name, DoneEvent) for the closing table

    escape = not encodes_unicode(out)

    def json_line(ev: Any, index: int) -> str:  # several prompts: which one, a key first
        return event_json(ev, escape, f'"prompt_index":{index},' if many else "")

    def heading(mode: str, item: PromptItem) -> None:
        out.write(f"\n{header(f'{mode} · {item.name}' if many else mode, style)}\n")
        out.write(style.dim("> " + item.prompt) + "\n")

    for index, item in enumerate(items):
        if first_run is not None:
            first_run.resume_if_ready()
        seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
        seen: list[Any] = []  # every row's events; compare: the rows after the first print later
        if not args.json:
            heading(modes[0], item)
        events = generate_batch(
            lm,
            item.prompt,
            modes=modes,
            seeds=[seed] * len(modes),
            config=cfg,
            max_tokens=args.max_tokens,
            stop=tuple(args.stop or ()),
            system=args.system,
            top_logprobs=args.top_logprobs if args.json else 0,
            should_stop=interrupt.stop_now,
            confidence_samples=args.confidence_samples,
        )
        try:
            for ev in events:
                ev = with_abstention(ev, args.min_confidence)
                seen.append(ev)
                if ev.mode == modes[0]:  # compare: each row's events stay together, in order
                    out.write(json_line(ev, index) if args.json else event_text(ev, style))
                    out.flush()
        except GenerationError as err:  # --json ends with the schema's error event (then exit 1)
            if args.json:
                out.write(json_line(ErrorEvent(message=str(err)), index))
            raise
        # Interrupted: the rows after the first were never shown, and stay unshown (as when
        # the modes ran one after another and Ctrl-C came during the first).
        for mode in modes[1:] if not interrupt.stopped else ():
            mine = [ev for ev in seen if ev.mode == mode]
            if args.json:
                out.write("".join(json_line(ev, index) for ev in mine))
            else:
                heading(mode, item)
                out.write("".join(event_text(ev, style) for ev in mine))
        dones = [ev for mode in modes for ev in seen if ev.mode == mode and ev.type == "done"]
        finished += [(item.name, d) for d in dones]
        if args.plot:
            title = item.prompt if len(item.prompt) < 100 else item.prompt[:97] + "..."
            path = plots[index]
            from .plot import plot_runs

            runs = [(m, [ev for ev in seen if ev.mode == m and ev.type == "token"]) for m in modes]
            try:  # checked before the load; the file system can still change meanwhile
                plot_runs(runs, cfg, path, title=f"{lm.info.name}: {title}")
            except OSError as err:
                why = first_line(err)
                raise InvalidRequestError(f"cannot write the plot {path}: {why}") from err
            if not args.json:
                out.write(style.dim(f"plot: {path}") + "\n")
        if len(dones) > 1 and not args.json:
            out.write("\n" + compare_table(dones, style) + "\n")
        if interrupt.stopped:
            break
    if many and finished and not args.json:
        out.write("\n" + header("all prompts", style) + "\n")
        out.write(prompts_table(finished, style) + "\n")
    if first_run is not None:
        first_run.closing_note()
    return EXIT_INTERRUPTED if interrupt.stopped else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    lenient_stdout()
    args = build_parser().parse_args(argv)  # usage errors: argparse prints them and exits 2
    from ..runtime.distributed import rank

    where = rank()  # under mlx.launch: rank 0 prints, the other ranks compute silently
    out = sys.stdout if where == 0 else open(os.devnull, "w")  # noqa: SIM115
    prog = PROG if where == 0 else f"{PROG} (rank {where})"
    try:
        code = run(args, out)
        out.flush()  # the last text's write error shows here, not at exit
        return code
    except GenerationError as err:  # the model's own failure, not the input's: after its text
        if not args.json:
            out.write("\n")
            out.flush()
        print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except EntropixError as err:
        print(f"{prog}: error: {first_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:  # stdout: a reader gone (`| head`), a full disk
        return output_failed(prog, err)
