"""``benchmarks/eval.py``: run an evaluation from the command line and write its reports."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Mode, SamplerConfig, apply_preset, config_file_error
from ..errors import (
    EntropixError,
    InvalidRequestError,
    check_writable,
    lenient_stdout,
    output_failed,
)
from .harness import (
    KNOWN_MODES,
    MODES,
    Format,
    check_prompts,
    engine_generate_fn,
    evaluate,
    load_items,
)
from .report import confidence_markdown, confidence_plot, plot, to_markdown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/eval.py",
        description="Accuracy of greedy / normal / entropix on a CSV with prompt and answer "
        "columns: JSON + markdown + PNG, 95%% CIs, paired differences vs greedy.",
    )
    p.add_argument(
        "csv",
        help="evaluation CSV (prompt, answer[, kind, category, format]); or a result .json "
        "written earlier: redraw its markdown table and PNG without generating",
    )
    p.add_argument("--model", help="model path or Hugging Face id (default: embedded SmolLM2)")
    p.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated, of {','.join(KNOWN_MODES)} (default: {','.join(MODES)})",
    )
    p.add_argument("--seeds", type=int, default=2, help="seeds per sampled mode (default 2)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--max-tokens", type=int, default=32, help="per answer (default 32)")
    p.add_argument(
        "--chat-max-tokens", type=int, help="per answer of chat items (default: --max-tokens)"
    )
    p.add_argument(
        "--sc-k", type=int, default=5, help="rows voted per answer in mode sc (default 5)"
    )
    p.add_argument(
        "--confidence-samples", type=int, default=0,
        help="hidden rows sampled per answer, their agreement recorded (default 0)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, help="only the first N items")
    p.add_argument("--config", help="sampler config JSON/TOML (default: the model's calibrated)")
    p.add_argument("--preset", help="entropix preset on top of the config (configs/presets/)")
    p.add_argument("--system", help="system message for chat items")
    p.add_argument("--fewshot", help="CSV of solved examples put before every question")
    p.add_argument("--shots", type=int, default=5, help="examples taken from --fewshot")
    p.add_argument(
        "--no-chat-template",
        action="store_true",
        help="items without a format column are raw text completions (base models)",
    )
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument(
        "--fork-cue",
        action="store_true",
        help="fork mode reads its branches' answers after the answer cue ('So the answer is' "
        "unless the config sets fork_answer_cue) instead of with the grader's reader",
    )
    p.add_argument(
        "--reason",
        action="store_true",
        help="reasoning format: chat items are asked to think step by step and end with "
        "'Answer: ...', raw items get worked examples written out step by step (eval/reasoning.py)",
    )
    p.add_argument(
        "--reason-max-tokens",
        type=int,
        default=160,
        help="per answer in the reasoning format, every item (default 160)",
    )
    p.add_argument("--out", help="output prefix (default: benchmarks/results/eval_<csv stem>)")
    p.add_argument("--png", help="PNG path (default: <out>.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--signals",
        action="store_true",
        help="keep every token's log-prob, top-2 and metrics in the records (new confidence "
        "features without generating again)",
    )
    return p


def _parse_modes(text: str) -> list[Mode]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in KNOWN_MODES]
    if bad or not modes:
        raise InvalidRequestError(f"unknown mode(s) {bad or text!r} (use {', '.join(KNOWN_MODES)})")
    # Greedy first: it is the baseline of the paired differences.
    return sorted(set(modes), key=KNOWN_MODES.index)  # type: ignore[arg-type]


def _at_least_1(name: str, value: int | None) -> None:
    """A count option's check (None: not given)."""
    if value is not None and value < 1:
        raise InvalidRequestError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")


def _check_png(png: str) -> None:
    """--png: writable, and of a format matplotlib writes (its suffix picks the format)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(png)
    check_writable(path, "the PNG")
    kind = path.suffix.lstrip(".").lower()
    if kind and kind not in FigureCanvasBase.get_supported_filetypes():
        raise InvalidRequestError(f"cannot write the PNG {path}: unknown image type .{kind}")


def main(argv: Sequence[str] | None = None) -> int:
    lenient_stdout()
    args = build_parser().parse_args(argv)
    try:
        code = _main(args)
        sys.stdout.flush()  # a reader gone (`| head`) shows here, not as an error at exit
        return code
    except EntropixError as err:
        print(f"eval: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the run started (a run saves what it finished)
        print("eval: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # stdout (a full disk, a reader gone): the files are written
        return output_failed("eval", err)


def _main(args: argparse.Namespace) -> int:
    from ..io.load import load
    from ..runtime.device import runtime_info

    if str(args.csv).endswith(".json"):
        return _rerender(Path(args.csv), args.out, args.png)
    modes = _parse_modes(args.modes)
    for name in ("max_tokens", "chat_max_tokens", "sc_k", "limit", "seeds"):
        _at_least_1(name, getattr(args, name))
    from ..engine.agreement import MAX_SAMPLES

    if not 0 <= args.confidence_samples <= MAX_SAMPLES:  # fork would skip the engine's check
        raise InvalidRequestError(
            f"--confidence-samples must lie in [0, {MAX_SAMPLES}] (got {args.confidence_samples})"
        )
    default_format: Format = "raw" if args.no_chat_template else "chat"
    if args.shots < 0:
        raise InvalidRequestError(f"--shots must be 0 or more (got {args.shots})")
    items = load_items(args.csv, default_format)[: args.limit]
    if args.reason:
        from .reasoning import to_reasoning

        _at_least_1("reason_max_tokens", args.reason_max_tokens)
        items = [to_reasoning(i) for i in items]
        args.max_tokens = args.chat_max_tokens = args.reason_max_tokens
    fewshot = load_items(args.fewshot, default_format)[: args.shots] if args.fewshot else []
    config = None
    if args.config:
        try:
            config = SamplerConfig.from_file(args.config)
        except Exception as err:  # a rejected value, OSError, JSON/TOML syntax alike
            why = config_file_error(err)
            raise InvalidRequestError(f"cannot use sampler config {args.config}: {why}") from err
    if args.preset:
        try:
            apply_preset(SamplerConfig(), args.preset)  # a bad name fails before the load
        except ValueError as err:
            raise InvalidRequestError(str(err)) from err
    out = Path(args.out or f"benchmarks/results/eval_{Path(args.csv).stem}")
    check_writable(Path(f"{out}.json"), "the results")  # last: it makes the directory
    if args.png:
        _check_png(args.png)
    lm = load(args.model)
    try:  # every prompt fits the context, before the first is generated
        check_prompts(lm, items, max_tokens=args.max_tokens, system=args.system,
                      fewshot=fewshot, chat_max_tokens=args.chat_max_tokens)  # fmt: skip
    except EntropixError as err:
        raise type(err)(f"{args.csv}, {err}") from err
    if args.preset:
        config = apply_preset(config or lm.default_config, args.preset)
    runtime = runtime_info()
    gen = engine_generate_fn(
        lm,
        max_tokens=args.max_tokens,
        config=config,
        system=args.system,
        fewshot=fewshot,
        stop=args.stop,
        chat_max_tokens=args.chat_max_tokens,
        sc_k=args.sc_k,
        keep_signals=args.signals,
        fork_reader=not args.fork_cue,
        confidence_samples=args.confidence_samples,
    )
    meta = {
        "csv": str(args.csv),
        "model": lm.info.name,
        "max_tokens": args.max_tokens,
        "chat_max_tokens": args.chat_max_tokens or args.max_tokens,
        "sc_k": args.sc_k,
        "confidence_samples": args.confidence_samples,
        "reason": args.reason,
        "fork_cue": args.fork_cue,
        "fewshot": args.fewshot,
        "shots": len(fewshot),
        "preset": args.preset,
        "config": (config or lm.default_config).model_dump(),
        "device": runtime.device,
        "blas": runtime.blas,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    result = evaluate(
        items,
        gen,
        modes=modes,
        seeds=args.seeds,
        base_seed=args.seed,
        progress=not args.quiet,
        meta=meta,
    )
    text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
    Path(f"{out}.json").write_text(text, encoding="utf-8")  # not the locale's: ASCII would fail
    # Stopped by Ctrl-C (130) or by an error (1, named): the files hold the finished items.
    error = result["run"].get("error")
    stopped, code = (f"error: {error}", 1) if error else ("interrupted", 130)
    if not result["records"]:
        print(f"eval: {stopped}; no item finished; wrote {out}.json", file=sys.stderr)
        return code
    _write_reports(result, out, args.png, [f"{out}.json"])
    if result["run"]["interrupted"]:
        n = result["run"]["n_items"]
        print(f"eval: {stopped}; results cover the first {n} complete items", file=sys.stderr)
        return code
    return 0


def _write_reports(result: dict[str, Any], out: Path, png: str | None, wrote: list[str]) -> None:
    """The markdown table and the PNGs of ``result``; ``wrote``: the files written before."""
    table = to_markdown(result) + confidence_markdown(result)
    Path(f"{out}.md").write_text(table, encoding="utf-8")
    png_path = Path(png) if png else Path(f"{out}.png")
    if not png_path.suffix:  # matplotlib adds it: the file is named as it will be
        png_path = png_path.with_suffix(".png")
    plot(result, png_path)
    conf_png = png_path.with_name(f"{png_path.stem}_confidence.png")
    wrote = [*wrote, f"{out}.md", str(png_path)]
    if confidence_plot(result, conf_png):
        wrote.append(str(conf_png))
    print(table)
    print(f"wrote {', '.join(wrote)}")


def _rerender(path: Path, out: str | None, png: str | None) -> int:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
        result["summary"], result["run"]  # noqa: B018  (a result file has both)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InvalidRequestError(f"{path} is not an evaluation result: {err}") from err
    prefix = Path(out) if out else path.with_suffix("")
    check_writable(Path(f"{prefix}.md"), "the table")
    if png:
        _check_png(png)
    try:
        _write_reports(result, prefix, png, [])  # the result file itself is not written again
    except (KeyError, TypeError) as err:  # a JSON object with other contents
        why = f"{type(err).__name__}: {err}"
        raise InvalidRequestError(f"{path} is not an evaluation result: {why}") from err
    return 0
