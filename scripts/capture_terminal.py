"""Capture a command's coloured terminal output (run in tmux) and render it to a PNG.

    uv run scripts/capture_terminal.py --out images/cli_compare.png -- \
        uv run mlx_main.py --compare --input "Which number is larger, 9.9 or 9.11?"
    uv run scripts/capture_terminal.py --from-ansi capture.txt --out shot.png  # render only

The command runs in a real terminal (a detached tmux pane, so stdout is a TTY and colours are
on, 24-bit via COLORTERM=truecolor); ``tmux capture-pane -e`` returns its text with the SGR
colour codes, which are drawn here with PIL in DejaVu Sans Mono (shipped with matplotlib).
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

BG = (24, 26, 31)
FG = (215, 218, 224)
PROMPT_FG = (140, 200, 120)
FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]")
BASIC = [  # the 16 ANSI colours (xterm defaults)
    (0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16),
    (36, 114, 200), (188, 63, 188), (17, 168, 205), (229, 229, 229),
    (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
    (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255),
]  # fmt: skip


def xterm256(n: int) -> tuple[int, int, int]:
    if n < 16:
        return BASIC[n]
    if n >= 232:
        v = 8 + 10 * (n - 232)
        return (v, v, v)
    n -= 16
    levels = (0, 95, 135, 175, 215, 255)
    return (levels[n // 36], levels[n // 6 % 6], levels[n % 6])


def parse(text: str) -> list[list[tuple[str, tuple[int, int, int], bool]]]:
    """Lines of (text, colour, bold) runs from ANSI text (SGR codes only)."""
    lines = []
    fg, bold, dim = None, False, False
    for raw in text.split("\n"):
        raw = OTHER_ESC.sub("", raw.rstrip("\r"))
        runs, pos = [], 0
        for m in [*SGR.finditer(raw), None]:
            chunk = raw[pos : m.start() if m else len(raw)]
            if chunk:
                colour = fg or FG
                if dim:  # halfway to the background
                    colour = tuple((c + b) // 2 for c, b in zip(colour, BG, strict=True))
                runs.append((chunk, colour, bold))
            if m is None:
                break
            pos = m.end()
            codes = [int(c) if c else 0 for c in m.group(1).replace(":", ";").split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    fg, bold, dim = None, False, False
                elif c == 1:
                    bold = True
                elif c == 2:
                    dim = True
                elif c == 22:
                    bold = dim = False
                elif c == 39:
                    fg = None
                elif 30 <= c <= 37 or 90 <= c <= 97:
                    fg = BASIC[c - 30 if c < 90 else c - 90 + 8]
                elif c in (38, 48) and i + 1 < len(codes):
                    kind = codes[i + 1]
                    value = None
                    if kind == 5 and i + 2 < len(codes):
                        value, i = xterm256(codes[i + 2]), i + 2
                    elif kind == 2 and i + 4 < len(codes):
                        value, i = tuple(codes[i + 2 : i + 5]), i + 4
                    if c == 38 and value is not None:
                        fg = value  # backgrounds are not used by our CLI
                i += 1
        lines.append(runs)
    while lines and not "".join(t for t, _, _ in lines[-1]).strip():
        lines.pop()
    return lines


def render(text: str, out: Path, size: int = 15, pad: int = 18) -> None:
    regular = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono.ttf"), size)
    boldf = ImageFont.truetype(str(FONT_DIR / "DejaVuSansMono-Bold.ttf"), size)
    lines = parse(text)
    cell_w = regular.getlength("M")
    cell_h = int(size * 1.35)
    cols = max((sum(len(t) for t, _, _ in runs) for runs in lines), default=1)
    img = Image.new("RGB", (int(cols * cell_w) + 2 * pad, len(lines) * cell_h + 2 * pad), BG)
    draw = ImageDraw.Draw(img)
    for row, runs in enumerate(lines):
        col = 0
        for chunk, colour, bold in runs:
            for ch in chunk:  # cell by cell, so wide glyphs never shift the grid
                draw.text(
                    (pad + col * cell_w, pad + row * cell_h),
                    ch,
                    font=boldf if bold else regular,
                    fill=colour,
                )
                col += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)


def capture(command: list[str], cols: int, rows: int, timeout: float) -> str:
    """Run ``command`` in a detached tmux pane and return the whole pane with colour codes."""
    session = f"capture{int(time.time())}"
    shown = " ".join(shlex.quote(a) for a in command)
    with tempfile.TemporaryDirectory() as tmp:
        done = Path(tmp) / "done"
        script = Path(tmp) / "run.sh"
        # Echo the command as a shell prompt line, run it, then mark completion.
        script.write_text(
            f"printf '\\033[1;32m$\\033[0m %s\\n' {shlex.quote(shown)}\n"
            f"{shown}\ntouch {shlex.quote(str(done))}\nsleep 3600\n"
        )
        subprocess.run(
            ["tmux", "new-session", "-d", "-s", session, "-x", str(cols), "-y", str(rows),
             "-e", "COLORTERM=truecolor", "bash", str(script)],
            check=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while not done.exists():
                if time.monotonic() > deadline:
                    raise SystemExit(f"timed out after {timeout:.0f} s")
                time.sleep(0.5)
            return subprocess.run(
                ["tmux", "capture-pane", "-p", "-e", "-S", "-", "-t", session],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--from-ansi", type=Path, help="render this ANSI text instead of running")
    p.add_argument("--save-ansi", type=Path, help="also keep the captured ANSI text here")
    p.add_argument("--cols", type=int, default=110)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("command", nargs="*", help="the command to run (after --)")
    args = p.parse_args()
    if args.from_ansi:
        text = args.from_ansi.read_text()
    elif args.command:
        text = capture(args.command, args.cols, args.rows, args.timeout)
        if args.save_ansi:
            args.save_ansi.write_text(text)
    else:
        p.error("give a command (after --) or --from-ansi FILE")
    render(text, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
