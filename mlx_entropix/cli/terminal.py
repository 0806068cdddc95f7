"""Terminal rendering: tokens coloured by their quadrant as they stream, a legend, summaries,
and ``--info``.

Colours come from ``STATE_INFO`` (one palette for the terminal, the plots and the UI): 24-bit
ANSI when the terminal says it supports it (``COLORTERM=truecolor``), else the nearest of the
xterm 256 colours. No colour at all when the stream is not a TTY or ``NO_COLOR`` is set
(https://no-color.org), unless forced with ``--color always``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO

from ..engine.confidence import reading
from ..events import ACTIONS, STATE_INFO, STATES, DoneEvent, ForkEvent, TokenEvent

ColourChoice = Literal["auto", "always", "never"]
RESET = "\x1b[0m"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
SWATCH = "\u25a0"  # a filled square in the legend


_CUBE = (0, 95, 135, 175, 215, 255)  # xterm's 6x6x6 colour cube levels


def rgb_to_256(r: int, g: int, b: int) -> int:
    """The nearest xterm-256 colour (cube or grey ramp), by squared RGB distance."""
    ci = [min(range(6), key=lambda i: abs(_CUBE[i] - v)) for v in (r, g, b)]
    cube = tuple(_CUBE[i] for i in ci)
    grey_i = min(23, max(0, round((sum((r, g, b)) / 3 - 8) / 10)))
    grey = (8 + 10 * grey_i,) * 3

    def dist(c: tuple[int, ...]) -> int:
        return sum((x - y) ** 2 for x, y in zip(c, (r, g, b), strict=True))

    if dist(grey) < dist(cube):
        return 232 + grey_i
    return 16 + 36 * ci[0] + 6 * ci[1] + ci[2]


@dataclass(frozen=True)
class Style:
    """How to paint text: no colour, 256 colours or 24-bit."""

    colour: bool = False
    truecolor: bool = False

    @classmethod
    def for_stream(
        cls, stream: TextIO, choice: ColourChoice = "auto", env: Mapping[str, str] | None = None
    ) -> Style:
        env = os.environ if env is None else env
        on = choice == "always"
        if choice == "auto":
            isatty = getattr(stream, "isatty", None)
            on = not env.get("NO_COLOR") and bool(isatty and isatty()) and env.get("TERM") != "dumb"
        return cls(colour=on, truecolor=on and env.get("COLORTERM", "") in ("truecolor", "24bit"))

    def fg(self, colour: str) -> str:
        r, g, b = (int(colour.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))
        if self.truecolor:
            return f"\x1b[38;2;{r};{g};{b}m"
        return f"\x1b[38;5;{rgb_to_256(r, g, b)}m"

    def paint(self, text: str, colour: str | None = None, bold: bool = False) -> str:
        if not self.colour or not text:
            return text
        codes = (BOLD if bold else "") + (self.fg(colour) if colour else "")
        return f"{codes}{text}{RESET}" if codes else text

    def dim(self, text: str) -> str:
        return f"{DIM}{text}{RESET}" if self.colour and text else text

    def state(self, state: str, text: str) -> str:
        return self.paint(text, STATE_INFO[state].colour)  # type: ignore[index]


def legend(style: Style, width: int = 100) -> str:
    """Each quadrant's name in its colour, packed into lines of at most ``width`` columns."""
    lines: list[str] = []
    line, used = "", 0
    for s in STATES:
        label = STATE_INFO[s].label
        key = "" if s in label else f" ({s})"
        visible = len(SWATCH) + 1 + len(label) + len(key)
        item = style.state(s, f"{SWATCH} {label}") + (style.dim(key) if key else "")
        if line and used + 2 + visible > width:
            lines.append(line)
            line, used = "", 0
        line, used = (f"{line}  {item}", used + 2 + visible) if line else (item, visible)
    return "\n".join([*lines, line])


def token_text(event: TokenEvent, style: Style) -> str:
    """A token's text in its quadrant's colour (plain when colour is off)."""
    return style.state(event.state, event.text)


def header(title: str, style: Style) -> str:
    return style.paint(f"── {title} ", bold=True) + style.dim("─" * max(3, 60 - len(title)))


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def count(n: int, noun: str, plural: str = "") -> str:
    """A count and its noun, singular for exactly one ("1 token", "0 tokens"; the UI's count)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def summary(done: DoneEvent, style: Style) -> str:
    """Tokens, speed, time to first token, count per quadrant and per sampler action."""
    prefill = f"at {done.prefill_tok_s:.0f} tok/s" if done.prefill_tok_s else "not finished"
    head = (
        f"{style.paint(done.mode, bold=True)}: {count(done.generated_tokens, 'token')} "
        f"({done.finish_reason}), seed {done.seed}\n"
        f"  speed:   {done.decode_tok_s:.1f} tok/s decode · first token {_fmt_s(done.ttft_s)} · "
        f"prefill {count(done.prompt_tokens, 'token')} {prefill} · total {_fmt_s(done.total_s)}"
    )
    states = "  ".join(
        f"{style.state(s, STATE_INFO[s].label)} {done.state_counts.get(s, 0)}" for s in STATES
    )
    actions = "  ".join(f"{a} {done.action_counts.get(a, 0)}" for a in ACTIONS)
    forks = ""
    if done.forks:
        forks = (
            f"\n  forks:   {done.forks} · {count(done.tokens_computed, 'token')} computed for "
            f"{done.generated_tokens} emitted"
        )
    return f"{head}\n  states:  {states}\n  actions: {actions}{forks}{confidence_line(done)}"


def confidence_line(done: DoneEvent) -> str:
    """The answer's confidence, its plain reading and the span it was computed on."""
    if done.confidence is None:
        return ""
    start, end = done.answer_span or (0, 0)
    answer = done.text[start:end].strip()
    answer = answer if len(answer) <= 40 else answer[:37] + "..."
    abstained = " · ABSTAINED (below --min-confidence; the text is kept)" if done.abstained else ""
    agree = ""
    if done.agreement is not None:
        agreed = round(done.agreement * done.confidence_samples)
        agree = f" · {agreed}/{done.confidence_samples} samples agree"
    return (
        f"\n  answer:  {answer!r} · confidence {confidence_text(done.confidence)}{agree}{abstained}"
    )


def confidence_text(confidence: float) -> str:
    """``0.83 (likely right)``. Two decimals cut, not rounded: 0.998 below a threshold of 1 (or
    0.6999 read "unsure") must not show as 1.00 (0.70); the 1e-9 keeps 0.29 (28.999... x 100)."""
    return f"{math.floor(confidence * 100 + 1e-9) / 100:.2f} ({reading(confidence)})"


def fork_line(event: ForkEvent, style: Style, width: int = 24) -> str:
    """One line per fork: ``⑂ fork at 0: [kept] "Paris" 0.93 | "The" 0.41 | ...``."""

    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    parts = [
        ("[kept] " if b.kept else "")
        + (f"↳{b.parent}@{b.at} " if b.parent is not None else "")  # an answer fork's branch
        + f"{short(b.text)!r} {b.score:.2f}"
        + (f" ={b.answer}" if b.answer and len(b.answer) <= width // 2 else "")
        for b in event.branches
    ]
    head = style.paint(f"⑂ fork at {event.index} ({event.trigger}, {event.score}):", bold=True)
    line = f"{head} " + " | ".join(parts)
    if not event.groups:
        return line
    # The answers the branches reached (summed scores: CoT-decoding's aggregation), and which won.
    groups = " · ".join(
        ("[won] " if g.won else "") + f"{short(g.answer)!r} {g.score:.2f} ×{g.branches}"
        for g in event.groups
    )
    return f"{line}\n  answers{' (summed)' if event.aggregate else ''}: {groups}"


def compare_table(dones: Sequence[DoneEvent], style: Style) -> str:
    """Side-by-side summary of runs on the same prompt and seed (one column per mode)."""
    rows: list[tuple[str, str | None, list[str]]] = [
        ("tokens", None, [str(d.generated_tokens) for d in dones]),
        ("finish", None, [d.finish_reason for d in dones]),
        ("decode tok/s", None, [f"{d.decode_tok_s:.1f}" for d in dones]),
        ("first token", None, [_fmt_s(d.ttft_s) for d in dones]),
        *[(STATE_INFO[s].label, s, [str(d.state_counts.get(s, 0)) for d in dones]) for s in STATES],
        *[(f"action {a}", None, [str(d.action_counts.get(a, 0)) for d in dones]) for a in ACTIONS],
    ]
    width = max(len(r[0]) for r in rows) + 2
    cols = [max(10, len(d.mode) + 2) for d in dones]
    lines = [
        " " * width
        + "".join(style.paint(d.mode.rjust(c), bold=True) for d, c in zip(dones, cols, strict=True))
    ]
    for name, state, values in rows:
        label = name.ljust(width)
        if state is not None:
            label = style.state(state, name) + " " * (width - len(name))
        lines.append(label + "".join(v.rjust(c) for v, c in zip(values, cols, strict=True)))
    return "\n".join(lines)


def prompts_table(runs: Sequence[tuple[str, DoneEvent]], style: Style) -> str:
    """One row per (prompt, mode) run and a total per mode: tokens, decode tok/s and the share
    of tokens in each quadrant (``--prompts`` / ``--prompt_csv``)."""
    labels = [STATE_INFO[s].label for s in STATES]
    head = ["prompt", "mode", "tokens", "tok/s", *labels]

    def row(name: str, mode: str, dones: Sequence[DoneEvent]) -> list[str]:
        n = sum(d.generated_tokens for d in dones)
        timed = [d for d in dones if d.decode_tok_s > 0]  # none: one token each, or cancelled
        seconds = sum(d.generated_tokens / d.decode_tok_s for d in timed)
        speed = f"{sum(d.generated_tokens for d in timed) / seconds:.1f}" if seconds else "-"
        shares = [sum(d.state_counts.get(s, 0) for d in dones) / n if n else 0.0 for s in STATES]
        return [name, mode, str(n), speed] + [f"{100 * x:.0f}%" for x in shares]

    rows = [row(name, done.mode, [done]) for name, done in runs]
    modes = list(dict.fromkeys(d.mode for _, d in runs))
    totals = [row(f"all ({len(runs) // len(modes)})", m, [d for _, d in runs if d.mode == m])
              for m in modes]  # fmt: skip
    widths = [max(len(r[i]) for r in [head, *rows, *totals]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        out = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        return "  ".join(out + [c.rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)])

    state_head = [style.state(s, lab.rjust(w)) for s, lab, w in zip(STATES, labels, widths[4:],
                  strict=True)]  # fmt: skip
    title = line(head[:4] + [""] * len(STATES)).rstrip()
    lines = [style.paint(title, bold=True) + "  " + "  ".join(state_head)]
    lines += [line(r) for r in rows]
    lines.append(style.dim("-" * len(line(totals[0]))))
    lines += [style.paint(line(t), bold=True) for t in totals]
    return "\n".join(lines)


def batch_rows_note(invariant: bool, strict_works: bool) -> str:
    """``--info``'s batch rows line: the server asks MKL for strict mode only where that makes
    the rows bitwise (``blas.strict_mode_works``: not on an AMD EPYC, never without MKL)."""
    if invariant:
        return "bitwise as alone (measured)"
    if strict_works:
        return "as alone up to the last bits (measured; the server asks MKL for strict mode)"
    return "as alone up to the last bits (measured; no BLAS mode fixes that here)"


def _strict_works() -> bool:
    from ..runtime import blas

    return blas.strict_mode_works()  # measured once per machine, then read from the cache


def print_info(lm: Any, out: TextIO, as_json: bool) -> None:
    """``--info``: the device, BLAS, compilation, kernel cache and model, as text or JSON."""
    from ..runtime import device

    rt = device.runtime_info()
    mi = lm.info
    if as_json:
        out.write(json.dumps({"runtime": rt.as_dict(), "model": mi.as_dict()}) + "\n")
        return
    rows = [
        ("device", rt.device),
        ("backend", rt.backend),
        ("BLAS", f"{rt.blas} ({rt.blas_path})" if rt.blas_path else rt.blas),
        ("BLAS note", rt.blas_note),
        ("compiled", rt.compile_note),
        ("kernels", rt.kernel_note),
        ("batch rows", batch_rows_note(rt.batch_invariant, rt.batch_invariant or _strict_works())),
        (
            "one row",
            f"computed as two in {mi.two_row_products} layers (faster with this BLAS, same bits)"
            if mi.two_row_products
            else "",
        ),
        ("dtype", f"{mi.compute_dtype} (weights stored as {mi.stored_as})"),
        (
            "metrics",
            "all six (logits + last-layer attention)"
            if mi.attention_metrics
            else f"logits only: attention not observable for {mi.model_type} (null)",
        ),
        ("model", mi.name),
        ("path", f"{mi.path} ({mi.format})"),
        (
            "size",
            f"{mi.n_params / 1e6:.1f}M params, {mi.n_layers} layers, "
            f"context {mi.context_length}, vocab {mi.vocab_size}",
        ),
        ("sharding", mi.sharding.note if mi.sharding else ""),
        ("load time", f"{mi.load_s:.2f} s"),
        ("mlx", rt.mlx_version),
        ("platform", rt.platform),
    ]
    for name, value in rows:
        if value:
            out.write(f"{name + ':':<11} {value}\n")


def event_text(ev: Any, style: Any) -> str:
    """How the terminal shows one event: a token's text, a fork's line, a run's summary."""
    if ev.type == "token":
        return token_text(ev, style)
    if ev.type == "fork":
        return "\n" + fork_line(ev, style) + "\n"
    return "\n\n" + summary(ev, style) + "\n"


def event_json(ev: Any, escape: bool, first: str = "") -> str:
    """An event as its JSON line (wire schema); ``escape``: an ASCII stdout, where \\u escapes
    keep what '?' would lose; ``first``: a key put before the event's own."""
    line = ev.model_dump_json()
    if escape:
        line = json.dumps(json.loads(line), separators=(",", ":"))
    return "{" + first + line[1:] + "\n"
