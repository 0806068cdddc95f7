"""Accuracy of greedy, normal and entropix sampling on a CSV of questions with known answers.

    uv run benchmarks/eval.py data/eval/core.csv --seeds 2 --max-tokens 24

The CSV needs ``prompt`` and ``answer`` columns; optional ``kind`` (numeric | choice | yesno |
exact | contains; inferred from the answer when empty, see ``answers.py``), ``category`` (a
per-category breakdown) and ``format`` (``chat``: the prompt is one user message in the model's
chat template, the default; ``raw``: plain text completion, no template, stop at the line end).

Design:
- Items are paired across modes: every mode answers every item with the same seeds, so the
  difference to greedy is computed per item. Greedy ignores the seed, so it runs once per item.
- Item i, seed index j uses the generation seed ``item_seed(base, i, j)``: the same command
  gives the same tokens, hence identical results apart from timings (``without_timings``).
- Statistics (``wilson``, ``paired_difference``), documented where defined: a per-item score is
  the fraction of seeds answered correctly; accuracy is the mean score over items.
- The generator is injected (``GenerateFn``) so the harness is tested without a model.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .answers import KINDS, Kind, extracted, infer_kind, match, parse_options
from .config import Mode
from .errors import EntropixError, InvalidRequestError
from .events import STATE_INFO, STATES

Format = Literal["chat", "raw"]
MODES: tuple[Mode, ...] = ("greedy", "normal", "entropix")
Z95 = 1.959963984540054  # two-sided 95% normal quantile
# Keys whose values depend on the machine's speed; everything else is deterministic.
TIMING_KEYS = frozenset({"seconds", "time_s", "tok_s", "s_per_generation", "wall_s", "started"})


@dataclass(frozen=True)
class Item:
    index: int  # 0-based row in the CSV
    prompt: str
    answer: str
    kind: Kind
    category: str = ""
    format: Format = "chat"


@dataclass
class Generation:
    """What the harness needs from one generation (a DoneEvent carries all of it)."""

    text: str
    tokens: int
    seconds: float
    finish_reason: str = "stop"
    state_counts: dict[str, int] = field(default_factory=dict)


GenerateFn = Callable[[Item, Mode, int], Generation]


# --------------------------------------------------------------------------- data


def load_items(path: str | Path, default_format: Format = "chat") -> list[Item]:
    """Read and validate an evaluation CSV; any problem is one ``InvalidRequestError`` line."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            reader = csv.DictReader(f)
            fields = set(reader.fieldnames or ())
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidRequestError(f"cannot read evaluation CSV {path}: {err}") from err
    missing = {"prompt", "answer"} - fields
    if missing:
        raise InvalidRequestError(
            f"{path} needs the columns prompt and answer (missing: {', '.join(sorted(missing))})"
        )
    items = []
    for i, r in enumerate(rows):
        line = f"{path}, row {i + 2}"  # +1 header, +1 one-based
        prompt, answer = (r.get("prompt") or "").strip(), (r.get("answer") or "").strip()
        if not prompt or not answer:
            raise InvalidRequestError(f"{line}: empty prompt or answer")
        kind = (r.get("kind") or "").strip().lower() or infer_kind(answer)
        if kind not in KINDS:
            raise InvalidRequestError(f"{line}: unknown kind {kind!r} (use {', '.join(KINDS)})")
        fmt = (r.get("format") or "").strip().lower() or default_format
        if fmt not in ("chat", "raw"):
            raise InvalidRequestError(f"{line}: unknown format {fmt!r} (use chat or raw)")
        try:
            match("", answer, kind)  # type: ignore[arg-type]  # validates the answer
        except ValueError as err:
            raise InvalidRequestError(f"{line}: {err}") from err
        raw_prompt = r.get("prompt") or ""
        # Raw completions continue the text exactly; keep the prompt's own whitespace there.
        text = raw_prompt.rstrip("\n") if fmt == "raw" else prompt
        items.append(Item(i, text, answer, kind, (r.get("category") or "").strip(), fmt))  # type: ignore[arg-type]
    if not items:
        raise InvalidRequestError(f"{path} has no items")
    return items


def item_seed(base: int, item: int, j: int) -> int:
    """The generation seed of item ``item`` and seed index ``j`` (same in every mode: paired)."""
    return (base * 1_000_003 + j * 104_729 + item * 7_919) % (2**31)


# --------------------------------------------------------------------------- statistics


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed on ``n`` items.

    With several seeds, ``p`` is the mean per-item score (a fraction in [0, 1]). Using n = items
    (not items x seeds) is conservative: a score in [0, 1] with mean p has variance at most
    p(1 - p), the Bernoulli variance the interval assumes, and seeds are not independent items.
    """
    if n <= 0:
        return (0.0, 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: Sequence[float], b: Sequence[float], z: float = Z95) -> dict[str, Any]:
    """Mean of per-item differences a_i - b_i with a normal-approximation 95% interval.

    mean(d) +- z * sd(d) / sqrt(n), sd with ddof=1 (the paired z-interval; with 100+ items it
    is indistinguishable from the paired t-interval). Also counts items where a is better
    (wins), worse (losses) or equal (ties).
    """
    if len(a) != len(b):
        raise ValueError("paired samples must have the same length")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    mean = sum(d) / n if n else 0.0
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1)) if n > 1 else 0.0
    half = z * sd / math.sqrt(n) if n else 0.0
    return {
        "mean": mean,
        "ci95": [mean - half, mean + half],
        "wins": sum(x > 0 for x in d),
        "losses": sum(x < 0 for x in d),
        "ties": sum(x == 0 for x in d),
    }


# --------------------------------------------------------------------------- running


def _running_postfix(scores: dict[str, list[float]]) -> str:
    return " | ".join(f"{m} {100 * sum(s) / len(s):.0f}%" for m, s in scores.items() if s)


def run_eval(
    items: Sequence[Item],
    generate_fn: GenerateFn,
    *,
    modes: Sequence[Mode] = MODES,
    seeds: int = 1,
    base_seed: int = 0,
    progress: bool = True,
    sink: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Generate and score every (item, mode, seed); returns one record per generation.

    Order: item by item, every mode on the item before the next, so the running accuracies in
    the progress bar compare the modes on the same items at every moment. Records are appended
    to ``sink`` as they come, so a caller keeps them if the run is interrupted.
    """
    if seeds < 1:
        raise InvalidRequestError(f"--seeds must be at least 1 (got {seeds})")
    runs = [(m, j) for m in modes for j in range(1 if m == "greedy" else seeds)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items) * len(runs), unit="gen", file=sys.stderr, dynamic_ncols=True)
    records: list[dict[str, Any]] = [] if sink is None else sink  # sink: kept on Ctrl-C
    running: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for item in items:
            for mode, j in runs:
                seed = item_seed(base_seed, item.index, j)
                gen = generate_fn(item, mode, seed)
                options = parse_options(item.prompt) if item.kind == "choice" else None
                ok = match(gen.text, item.answer, item.kind, options)
                records.append(
                    {
                        "item": item.index,
                        "category": item.category,
                        "mode": mode,
                        "seed_index": j,
                        "seed": seed,
                        "correct": ok,
                        "extracted": extracted(gen.text, item.kind, options),
                        "answer": item.answer,
                        "text": gen.text,
                        "tokens": gen.tokens,
                        "seconds": gen.seconds,
                        "finish_reason": gen.finish_reason,
                        "state_counts": dict(gen.state_counts),
                    }
                )
                running[mode].append(float(ok))
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(_running_postfix(running), refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return records


def _item_scores(records: Iterable[dict[str, Any]], mode: str) -> dict[int, float]:
    """Per item: the fraction of its seeds answered correctly in ``mode``."""
    hits: dict[int, list[bool]] = defaultdict(list)
    for r in records:
        if r["mode"] == mode:
            hits[r["item"]].append(r["correct"])
    return {i: sum(h) / len(h) for i, h in sorted(hits.items())}


def summarize(
    records: Sequence[dict[str, Any]], modes: Sequence[Mode], baseline: Mode = "greedy"
) -> dict[str, Any]:
    """Accuracy with its 95% CI, paired difference vs ``baseline``, cost and states per mode."""
    out: dict[str, Any] = {}
    base = _item_scores(records, baseline) if baseline in modes else None
    for mode in modes:
        recs = [r for r in records if r["mode"] == mode]
        scores = _item_scores(recs, mode)
        n = len(scores)
        acc = sum(scores.values()) / n if n else 0.0
        tokens = sum(r["tokens"] for r in recs)
        seconds = sum(r["seconds"] for r in recs)
        states = Counter({s: 0 for s in STATES})
        for r in recs:
            states.update(r["state_counts"])
        by_seed: dict[int, list[bool]] = defaultdict(list)
        by_cat: dict[str, list[float]] = defaultdict(list)
        for r in recs:
            by_seed[r["seed_index"]].append(r["correct"])
        cats = {r["item"]: r["category"] for r in recs}
        for i, s in scores.items():
            by_cat[cats[i]].append(s)
        lo, hi = wilson(acc, n)
        row: dict[str, Any] = {
            "accuracy": acc,
            "ci95": [lo, hi],
            "n_items": n,
            "n_generations": len(recs),
            "accuracy_per_seed": [sum(v) / len(v) for _, v in sorted(by_seed.items())],
            "accuracy_per_category": {c: sum(v) / len(v) for c, v in sorted(by_cat.items())},
            "mean_tokens": tokens / len(recs) if recs else 0.0,
            "tokens": tokens,
            "time_s": seconds,
            "tok_s": tokens / seconds if seconds > 0 else 0.0,
            "s_per_generation": seconds / len(recs) if recs else 0.0,
            "finish_reasons": dict(sorted(Counter(r["finish_reason"] for r in recs).items())),
            "state_counts": dict(states),
        }
        if base is not None and mode != baseline:
            common = sorted(set(scores) & set(base))
            row[f"vs_{baseline}"] = paired_difference(
                [scores[i] for i in common], [base[i] for i in common]
            )
        out[mode] = row
    return out


def without_timings(obj: Any) -> Any:
    """``obj`` with every machine-speed-dependent value removed (for determinism checks)."""
    if isinstance(obj, dict):
        return {k: without_timings(v) for k, v in obj.items() if k not in TIMING_KEYS}
    if isinstance(obj, list):
        return [without_timings(v) for v in obj]
    return obj


# --------------------------------------------------------------------------- reports


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def to_markdown(result: dict[str, Any]) -> str:
    """The summary table (and a per-category table) as GitHub markdown."""
    summary, meta = result["summary"], result["run"]
    lines = [
        f"**{meta['csv']}**: {meta['n_items']} items, {meta['seeds']} seed(s) for sampled "
        f"modes (greedy runs once), max {meta['max_tokens']} tokens, model {meta['model']}.",
        "",
        "| mode | accuracy % | 95% CI (Wilson) | Δ vs greedy, pts [95% CI] | better / worse items "
        "| mean tokens | tok/s (end to end) | time s "
        "| tokens per state (" + " / ".join(STATES) + ") |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, s in summary.items():
        d = s.get("vs_greedy")
        diff = (
            f"{100 * d['mean']:+.1f} [{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}]"
            if d
            else "baseline"
        )
        wl = f"{d['wins']} / {d['losses']}" if d else "-"
        states = " / ".join(str(s["state_counts"].get(k, 0)) for k in STATES)
        lines.append(
            f"| {mode} | {_pct(s['accuracy'])} | [{_pct(s['ci95'][0])}, {_pct(s['ci95'][1])}] "
            f"| {diff} | {wl} | {s['mean_tokens']:.1f} | {s['tok_s']:.1f} | {s['time_s']:.1f} "
            f"| {states} |"
        )
    cats = sorted({c for s in summary.values() for c in s["accuracy_per_category"]})
    if len(cats) > 1 or (cats and cats[0]):
        modes = list(summary)
        lines += ["", "| category | " + " | ".join(f"{m} %" for m in modes) + " |"]
        lines.append("|---" * (len(modes) + 1) + "|")
        for c in cats:
            vals = [summary[m]["accuracy_per_category"].get(c) for m in modes]
            cells = " | ".join("-" if v is None else _pct(v) for v in vals)
            lines.append(f"| {c or '(none)'} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: str | Path) -> None:
    """PNG: accuracy with 95% CI per mode, accuracy per category, and tokens per state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    summary = result["summary"]
    modes = list(summary)
    fig = Figure(figsize=(15, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.6, 1.2]})
    colours = {"greedy": "#666666", "normal": "#56B4E9", "entropix": "#0072B2"}

    accs = [100 * summary[m]["accuracy"] for m in modes]
    err = [
        [a - 100 * summary[m]["ci95"][0] for a, m in zip(accs, modes, strict=True)],
        [100 * summary[m]["ci95"][1] - a for a, m in zip(accs, modes, strict=True)],
    ]
    ax1.bar(modes, accs, yerr=err, capsize=6, color=[colours.get(m, "#999") for m in modes])
    for x, (m, a) in enumerate(zip(modes, accs, strict=True)):
        d = summary[m].get("vs_greedy")
        note = f"{a:.1f}%" + (f"\nΔ {100 * d['mean']:+.1f} pts" if d else "")
        ax1.text(x, 2, note, ha="center", va="bottom", color="white", fontsize=9)
    ax1.set_ylim(0, 100)
    ax1.set_ylabel("accuracy % (95% Wilson CI)")
    ax1.set_title("Accuracy per mode")

    cats = sorted({c for m in modes for c in summary[m]["accuracy_per_category"]})
    width = 0.8 / max(len(modes), 1)
    for k, m in enumerate(modes):
        vals = [100 * summary[m]["accuracy_per_category"].get(c, 0.0) for c in cats]
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(cats))]
        ax2.bar(xs, vals, width, label=m, color=colours.get(m, "#999"))
    ax2.set_xticks(range(len(cats)), [c or "(all)" for c in cats], rotation=20, ha="right")
    ax2.set_ylim(0, 100)
    ax2.set_title("Accuracy per category")
    ax2.legend(fontsize=8)

    bottom = [0.0] * len(modes)
    for state in STATES:
        fracs = []
        for m in modes:
            total = sum(summary[m]["state_counts"].values()) or 1
            fracs.append(100 * summary[m]["state_counts"].get(state, 0) / total)
        ax3.bar(modes, fracs, bottom=bottom, color=STATE_INFO[state].colour, label=state, width=0.6)
        bottom = [b + f for b, f in zip(bottom, fracs, strict=True)]
    for x, m in enumerate(modes):
        s = summary[m]
        ax3.text(x, 101, f"{s['mean_tokens']:.1f} tok\n{s['tok_s']:.0f} tok/s", ha="center",
                 va="bottom", fontsize=8)  # fmt: skip
    ax3.set_ylim(0, 118)
    ax3.set_ylabel("% of generated tokens")
    ax3.set_title("Tokens per state, mean tokens, speed")
    ax3.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    meta = result["run"]
    fig.suptitle(
        f"{Path(meta['csv']).name}: {meta['n_items']} items, {meta['seeds']} seed(s), "
        f"{meta['model']}",
        fontsize=10,
    )
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


# --------------------------------------------------------------------------- the real engine


def build_prompt(tokenizer: Any, item: Item, system: str | None, fewshot: Sequence[Item]) -> Any:
    """What ``generate`` receives: chat messages (``chat``) or token ids (``raw``).

    Few-shot examples become user/assistant turns before the question (chat), or
    "prompt answer" lines before it (raw; ``system`` is not used there).
    """
    if item.format == "raw":
        text = "".join(f"{s.prompt} {s.answer.split('|')[0]}\n" for s in fewshot) + item.prompt
        return tokenizer.encode(text, add_special_tokens=True)
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    for s in fewshot:
        messages += [
            {"role": "user", "content": s.prompt},
            {"role": "assistant", "content": s.answer.split("|")[0]},
        ]
    messages.append({"role": "user", "content": item.prompt})
    return messages


def engine_generate_fn(
    lm: Any,
    *,
    max_tokens: int,
    config: Any = None,
    system: str | None = None,
    fewshot: Sequence[Item] = (),
    stop: Sequence[str] = (),
) -> GenerateFn:
    """A ``GenerateFn`` over ``mlx_entropix.generate``. Raw items stop at "\\n" unless ``stop``."""
    from .generate import generate

    def fn(item: Item, mode: Mode, seed: int) -> Generation:
        prompt = build_prompt(lm.tokenizer, item, system, fewshot)
        stops = tuple(stop) or (("\n",) if item.format == "raw" else ())
        done = None
        for event in generate(
            lm,
            prompt,
            mode=mode,
            config=config,
            max_tokens=max_tokens,
            seed=seed,
            stop=stops,
            top_logprobs=0,
        ):
            if event.type == "done":
                done = event
        assert done is not None  # the engine always ends with a DoneEvent
        return Generation(
            text=done.text,
            tokens=done.generated_tokens,
            seconds=done.total_s,
            finish_reason=done.finish_reason,
            state_counts=dict(done.state_counts),
        )

    return fn


def evaluate(
    items: Sequence[Item],
    generate_fn: GenerateFn,
    *,
    modes: Sequence[Mode] = MODES,
    seeds: int = 1,
    base_seed: int = 0,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run and summarize: the JSON-ready result (``run`` metadata, ``summary``, ``records``)."""
    start = time.perf_counter()
    interrupted = False
    records: list[dict[str, Any]] = []
    try:
        records = run_eval(
            items, generate_fn, modes=modes, seeds=seeds, base_seed=base_seed, progress=progress,
            sink=records,
        )  # fmt: skip
    except KeyboardInterrupt:
        # Keep what is complete: items every mode finished (pairing needs all of them).
        interrupted = True
        per_item = Counter(r["item"] for r in records)
        full = len(modes) + (seeds - 1) * sum(m != "greedy" for m in modes)
        records = [r for r in records if per_item[r["item"]] == full]
    n_done = len({r["item"] for r in records})
    return {
        "run": {
            **(meta or {}),
            "interrupted": interrupted,
            "n_items": n_done,
            "modes": list(modes),
            "seeds": seeds,
            "base_seed": base_seed,
            "item_seed": "(base*1000003 + seed_index*104729 + item*7919) mod 2^31",
            "ci": "accuracy: Wilson score 95% on n items; Δ vs greedy: paired z 95% on items",
            "wall_s": time.perf_counter() - start,
        },
        "summary": summarize(records, modes),
        "records": records,
    }


# --------------------------------------------------------------------------- CLI


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
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated (default: all)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per sampled mode (default 2)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--max-tokens", type=int, default=32, help="per answer (default 32)")
    p.add_argument("--limit", type=int, help="only the first N items")
    p.add_argument("--config", help="sampler config JSON/TOML (default: the model's calibrated)")
    p.add_argument("--system", help="system message for chat items")
    p.add_argument("--fewshot", help="CSV of solved examples put before every question")
    p.add_argument("--shots", type=int, default=5, help="examples taken from --fewshot")
    p.add_argument(
        "--no-chat-template",
        action="store_true",
        help="items without a format column are raw text completions (base models)",
    )
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    p.add_argument("--out", help="output prefix (default: benchmarks/results/eval_<csv stem>)")
    p.add_argument("--png", help="PNG path (default: <out>.png)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse_modes(text: str) -> list[Mode]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise InvalidRequestError(f"unknown mode(s) {bad or text!r} (use {', '.join(MODES)})")
    # Greedy first: it is the baseline of the paired differences.
    return sorted(set(modes), key=MODES.index)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except EntropixError as err:
        print(f"eval: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the run started (a run saves what it finished)
        print("eval: interrupted", file=sys.stderr)
        return 130


def _main(args: argparse.Namespace) -> int:
    from .config import SamplerConfig
    from .device import runtime_info
    from .load import load

    if str(args.csv).endswith(".json"):
        return _rerender(Path(args.csv), args.out, args.png)
    modes = _parse_modes(args.modes)
    if args.max_tokens < 1:
        raise InvalidRequestError(f"--max-tokens must be at least 1 (got {args.max_tokens})")
    default_format: Format = "raw" if args.no_chat_template else "chat"
    if args.limit is not None and args.limit < 1:
        raise InvalidRequestError(f"--limit must be at least 1 (got {args.limit})")
    if args.shots < 0:
        raise InvalidRequestError(f"--shots must be 0 or more (got {args.shots})")
    items = load_items(args.csv, default_format)[: args.limit]
    fewshot = load_items(args.fewshot, default_format)[: args.shots] if args.fewshot else []
    config = None
    if args.config:
        try:
            config = SamplerConfig.from_file(args.config)
        except Exception as err:  # OSError, JSON/TOML and validation errors alike
            raise InvalidRequestError(f"cannot use sampler config {args.config}: {err}") from err
    lm = load(args.model)
    runtime = runtime_info()
    gen = engine_generate_fn(
        lm,
        max_tokens=args.max_tokens,
        config=config,
        system=args.system,
        fewshot=fewshot,
        stop=args.stop,
    )
    meta = {
        "csv": str(args.csv),
        "model": lm.info.name,
        "max_tokens": args.max_tokens,
        "fewshot": args.fewshot,
        "shots": len(fewshot),
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
    out = Path(args.out or f"benchmarks/results/eval_{Path(args.csv).stem}")
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    if not result["records"]:
        print(f"eval: interrupted before any item finished; wrote {out}.json", file=sys.stderr)
        return 130
    _write_reports(result, out, args.png)
    if result["run"]["interrupted"]:
        n = result["run"]["n_items"]
        print(f"eval: interrupted: results cover the first {n} complete items", file=sys.stderr)
        return 130
    return 0


def _write_reports(result: dict[str, Any], out: Path, png: str | None) -> None:
    table = to_markdown(result)
    Path(f"{out}.md").write_text(table)
    png_path = Path(png) if png else Path(f"{out}.png")
    plot(result, png_path)
    print(table)
    print(f"wrote {out}.json, {out}.md, {png_path}")


def _rerender(path: Path, out: str | None, png: str | None) -> int:
    try:
        result = json.loads(path.read_text())
        result["summary"], result["run"]  # noqa: B018  (a result file has both)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise InvalidRequestError(f"{path} is not an evaluation result: {err}") from err
    _write_reports(result, Path(out) if out else path.with_suffix(""), png)
    return 0
