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
- Statistics: ``stats.py`` (a per-item score is the fraction of seeds answered correctly).
- The generator is injected (``GenerateFn``) so the harness is tested without a model.
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..answers import KINDS, Kind, extracted, infer_kind, match, parse_options
from ..config import PAPER_CUE, Mode
from ..errors import EntropixError, InvalidRequestError, first_line
from .stats import summarize

Format = Literal["chat", "raw"]
MODES: tuple[Mode, ...] = ("greedy", "normal", "entropix")  # the default run
# fork: --modes greedy,fork,...; sc: self-consistency, k normal rows voted (``consistency.py``)
KNOWN_MODES: tuple[Any, ...] = (*MODES, "fork", "sc")
DETERMINISTIC: tuple[Mode, ...] = ("greedy", "fork")  # they ignore the seed: run once


@dataclass(frozen=True)
class Item:
    index: int  # 0-based row in the CSV
    prompt: str
    answer: str
    kind: Kind
    category: str = ""
    format: Format = "chat"
    stops: tuple[str, ...] = ()  # its own stop strings (the reasoning format); () the format's


@dataclass
class Generation:
    """What the harness needs from one generation (a DoneEvent carries all of it)."""

    text: str
    tokens: int
    seconds: float
    finish_reason: str = "stop"
    state_counts: dict[str, int] = field(default_factory=dict)
    tokens_computed: int = 0  # fork branches included; 0: as generated
    # Fork branches / self-consistency rows: text, answer (and score), scored by the harness
    branches: list[dict[str, Any]] = field(default_factory=list)
    confidence: float | None = None  # on the grader's answer span (confidence.py)
    answer_span: tuple[int, int] | None = None
    features: dict[str, float | None] = field(default_factory=dict)  # refit: calibrate
    signals: dict[str, list] | None = None  # per token (--signals): new features offline


GenerateFn = Callable[[Item, Mode, int], Generation]


def load_items(path: str | Path, default_format: Format = "chat") -> list[Item]:
    """Read and validate an evaluation CSV; any problem is one ``InvalidRequestError`` line."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: Excel's BOM
            reader = csv.DictReader(f)
            # Header case and spacing as the prompt CSVs take them (io/prompts.py): "Prompt, Answer"
            reader.fieldnames = [(h or "").strip().lower() for h in reader.fieldnames or ()]
            fields = set(reader.fieldnames)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InvalidRequestError(f"cannot read evaluation CSV {path}: {err}") from err
    if missing := {"prompt", "answer"} - fields:
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
        # Raw completions continue the text exactly; keep the prompt's own whitespace there.
        text = r["prompt"].rstrip("\n") if fmt == "raw" else prompt
        items.append(Item(i, text, answer, kind, (r.get("category") or "").strip(), fmt))  # type: ignore[arg-type]
    if not items:
        raise InvalidRequestError(f"{path} has no items")
    return items


def item_seed(base: int, item: int, j: int) -> int:
    """The generation seed of item ``item`` and seed index ``j`` (same in every mode: paired)."""
    return (base * 1_000_003 + j * 104_729 + item * 7_919) % (2**31)


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
    """Generate and score every (item, mode, seed); returns one record per generation, also
    appended to ``sink`` as they come (kept on Ctrl-C). Item by item, every mode on an item
    before the next: the progress bar's running accuracies compare the modes on the same items."""
    if seeds < 1:
        raise InvalidRequestError(f"--seeds must be at least 1 (got {seeds})")
    runs = [(m, j) for m in modes for j in range(1 if m in DETERMINISTIC else seeds)]
    from tqdm import tqdm

    records: list[dict[str, Any]] = [] if sink is None else sink  # sink: kept on Ctrl-C
    running: dict[str, list[float]] = {m: [] for m in modes}
    total = len(items) * len(runs)
    with tqdm(
        total=total, unit="gen", file=sys.stderr, dynamic_ncols=True, disable=not progress
    ) as bar:
        for item in items:
            for mode, j in runs:
                seed = item_seed(base_seed, item.index, j)
                try:
                    gen = generate_fn(item, mode, seed)
                except Exception as err:
                    err.add_note(f"item {item.index}, mode {mode}, seed {seed}")
                    raise
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
                        "tokens_computed": gen.tokens_computed or gen.tokens,
                        "seconds": gen.seconds,
                        "finish_reason": gen.finish_reason,
                        "state_counts": dict(gen.state_counts),
                        "confidence": gen.confidence,
                        "answer_span": gen.answer_span,
                        "features": {
                            k: None if v is None else round(v, 6) for k, v in gen.features.items()
                        },
                        "format": item.format,
                    }
                )
                if gen.branches:
                    records[-1]["branches"] = [
                        {**b, "correct": match(b["text"], item.answer, item.kind, options)}
                        for b in gen.branches
                    ]
                if gen.signals is not None:
                    records[-1]["signals"] = gen.signals
                running[mode].append(float(ok))
                bar.update(1)
                accuracy = (f"{m} {100 * sum(s) / len(s):.0f}%" for m, s in running.items() if s)
                bar.set_postfix_str(" | ".join(accuracy), refresh=False)
    return records


def build_prompt(tokenizer: Any, item: Item, system: str | None, fewshot: Sequence[Item]) -> Any:
    """What ``generate`` receives: chat messages (``chat``; few-shot examples as user/assistant
    turns first) or token ids (``raw``; "prompt answer" lines first, no ``system``)."""
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


def budget_of(item: Item, max_tokens: int, chat_max_tokens: int | None) -> int:
    """An item's token budget: ``chat_max_tokens`` for chat items if given, else ``max_tokens``."""
    return chat_max_tokens if chat_max_tokens and item.format == "chat" else max_tokens


def check_prompts(
    lm: Any,
    items: Sequence[Item],
    *,
    max_tokens: int,
    system: str | None = None,
    fewshot: Sequence[Item] = (),
    chat_max_tokens: int | None = None,
) -> None:
    """Every item's prompt as ``engine_generate_fn`` builds it, checked before the run starts:
    a prompt longer than the context fails here with its row, not after the items before it
    (whose results would then be lost)."""
    from ..engine.request import prepare_prompt

    for item in items:
        prompt = build_prompt(lm.tokenizer, item, system, fewshot)
        try:
            prepare_prompt(lm, prompt, None, budget_of(item, max_tokens, chat_max_tokens))
        except EntropixError as err:
            raise type(err)(f"row {item.index + 2}: {err}") from err  # +1 header, +1 one-based


def engine_generate_fn(
    lm: Any,
    *,
    max_tokens: int,
    config: Any = None,
    system: str | None = None,
    fewshot: Sequence[Item] = (),
    stop: Sequence[str] = (),
    chat_max_tokens: int | None = None,
    sc_k: int = 5,
    keep_signals: bool = False,
    fork_reader: bool = True,
    confidence_samples: int = 0,
) -> GenerateFn:
    """A ``GenerateFn`` over the engine's ``generate``. Raw items stop at "\\n" unless ``stop``.
    ``chat_max_tokens``: the budget of chat items (default ``max_tokens``); ``sc_k``: the rows of
    a self-consistent answer (mode "sc"); ``keep_signals``: every token's signals in the record;
    ``fork_reader`` False: fork mode gets no answer kind, and the answer cue (the config's, else
    the paper's) reads its branches. ``confidence_samples``: hidden sampled rows per answer whose
    agreement the confidence takes (``engine/agreement.py``; 0 here by default: the evaluation
    measures the answer, and the rows cost k times its tokens)."""
    from ..engine.answer_checks import question_text
    from ..engine.confidence import TokenSignal, score, shipped_model
    from ..engine.generate import generate
    from .consistency import sample_rows, vote

    conf_model = shipped_model(lm.info.name)

    def fn(item: Item, mode: Mode, seed: int) -> Generation:
        prompt = build_prompt(lm.tokenizer, item, system, fewshot)
        stops = tuple(stop) or item.stops or (("\n",) if item.format == "raw" else ())
        budget = budget_of(item, max_tokens, chat_max_tokens)
        cfg = config or lm.default_config
        options = parse_options(item.prompt) if item.kind == "choice" else None
        if mode == "sc":
            dones = sample_rows(lm, prompt, sc_k, seed, cfg, budget, stops)
            rows = [{"text": d.text, "answer": extracted(d.text, item.kind, options)}
                    for d in dones]  # fmt: skip
            won = dones[vote([r["answer"] or None for r in rows])]
            return Generation(
                text=won.text,
                tokens=won.generated_tokens,
                seconds=max(d.total_s for d in dones),
                finish_reason=won.finish_reason,
                # the batch runs until its longest row ends (ended rows idle along)
                tokens_computed=sc_k * max(d.generated_tokens for d in dones),
                branches=rows,
            )
        if mode == "fork" and fork_reader:  # its branches' answers read as the grader will
            cfg = cfg.merged({"fork_answer_kind": item.kind})
        elif mode == "fork":  # no reader: the answer cue reads them
            cfg = cfg.merged({"fork_answer_cue": cfg.fork_answer_cue or PAPER_CUE})
        done, fork = None, None
        signals: list[TokenSignal] = []
        end = 0
        for event in generate(
            lm,
            prompt,
            mode=mode,
            config=cfg,
            max_tokens=budget,
            seed=seed,
            stop=stops,
            top_logprobs=2,  # the answer confidence's margin p1 - p2
            confidence_samples=confidence_samples,
        ):
            if event.type == "token":
                end += len(event.text)
                top2 = tuple(t.logprob for t in event.top[:2])
                signals.append(
                    TokenSignal(end, event.logprob, top2 if len(top2) == 2 else None,  # type: ignore[arg-type]
                                tuple(event.metrics.model_dump().values()))
                )  # fmt: skip
            elif event.type == "done":
                done = event
            elif event.type == "fork" and fork is None:
                fork = event
        assert done is not None  # the engine always ends with a DoneEvent
        # every field of a branch but its first token
        branches = [] if fork is None else [b.model_dump(exclude={"token"}) for b in fork.branches]
        # as the engine reads it: the raw text, or the question (``answer_checks.copied``)
        raw = item.format == "raw"
        text = question_text(lm.tokenizer, prompt, "raw") if raw else prompt[-1]["content"]
        scored = score(done.text, signals, conf_model, item.format, item.kind, options,
                       agreement=done.agreement, prompt=text)  # fmt: skip
        return Generation(
            text=done.text,
            tokens=done.generated_tokens,
            seconds=done.total_s,
            finish_reason=done.finish_reason,
            state_counts=dict(done.state_counts),
            tokens_computed=done.tokens_computed,
            branches=branches,
            confidence=scored.confidence,
            answer_span=scored.span,
            features=scored.features,
            signals=_compact(signals) if keep_signals else None,
        )

    return fn


def _compact(signals: Sequence[Any]) -> dict[str, list]:
    """Token signals as short lists (4 decimals) for the result JSON."""

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    return {
        "end": [s.end for s in signals],
        "logprob": [r(s.logprob) for s in signals],
        "top2": [None if s.top2 is None else [r(v) for v in s.top2] for s in signals],
        "metrics": [[r(v) for v in s.metrics] for s in signals],
    }


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
    """Run and summarize: the JSON-ready result (``run`` metadata, ``summary``, ``records``).
    Stopped by Ctrl-C or an error (out of memory, a bug on one item): the finished items,
    ``run.interrupted``, and an error named in ``run.error`` (the caller writes, exits non-0)."""
    start = time.perf_counter()
    interrupted, error = False, None
    records: list[dict[str, Any]] = []
    try:
        records = run_eval(
            items, generate_fn, modes=modes, seeds=seeds, base_seed=base_seed, progress=progress,
            sink=records,
        )  # fmt: skip
    except (KeyboardInterrupt, Exception) as err:
        # Keep what is complete: items every mode finished (pairing needs all of them).
        interrupted = True
        if not isinstance(err, KeyboardInterrupt):
            error = f"{type(err).__name__}: {first_line(err)}"
            error += f" ({err.__notes__[-1]})" if getattr(err, "__notes__", None) else ""
        per_item = Counter(r["item"] for r in records)
        full = len(modes) + (seeds - 1) * sum(m not in DETERMINISTIC for m in modes)
        records = [r for r in records if per_item[r["item"]] == full]
    return {
        "run": {
            **(meta or {}),
            "interrupted": interrupted,
            **({"error": error} if error else {}),
            "n_items": len({r["item"] for r in records}),
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
