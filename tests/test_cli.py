"""mlx_main.py driven as a subprocess (each flag, --json, --compare, --plot, bad input, Ctrl-C),
plus the terminal renderer and the plot on hand-made events."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx_entropix.cli.plot import PNG_SIZE, plot_runs
from mlx_entropix.cli.terminal import (
    Style,
    compare_table,
    legend,
    prompts_table,
    rgb_to_256,
    summary,
    token_text,
)
from mlx_entropix.config import SamplerConfig
from mlx_entropix.events import STATE_INFO, STATES, DoneEvent, Metrics, SamplingParams, TokenEvent

import pytest
from PIL import Image
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parent.parent
MAIN = str(ROOT / "mlx_main.py")
PROMPT = "Which number is larger, 9.9 or 9.11?"
EVENT = TypeAdapter(TokenEvent | DoneEvent)


def cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 300):
    full_env = {**os.environ, "NO_COLOR": "", **(env or {})}
    return subprocess.run(
        [sys.executable, MAIN, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def events_of(stdout: str) -> list[TokenEvent | DoneEvent]:
    return [EVENT.validate_json(line) for line in stdout.splitlines() if line.strip()]


def runs_of(events) -> list[tuple[list[TokenEvent], DoneEvent]]:
    """Split an event stream into (tokens, done) per generation."""
    runs, tokens = [], []
    for ev in events:
        if ev.type == "token":
            tokens.append(ev)
        else:
            runs.append((tokens, ev))
            tokens = []
    assert not tokens, "token events after the last done"
    return runs


# --- the engine through the CLI -------------------------------------------------------------


def test_json_lines_match_the_printed_text():
    args = ("--input", PROMPT, "--seed", "3", "--max-tokens", "12", "--system", "Be brief.")
    as_json = cli(*args, "--json")
    as_text = cli(*args)
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    [(tokens, done)] = runs_of(events_of(as_json.stdout))
    assert done.mode == "entropix" and done.seed == 3 and done.generated_tokens == len(tokens)
    assert [t.index for t in tokens] == list(range(len(tokens)))
    assert "".join(t.text for t in tokens) == done.text
    assert len(tokens[0].top) == 5  # --top-logprobs default
    # Same seed, same tokens: the plain output holds exactly that text, then the summary.
    assert f"> {PROMPT}\n{done.text}\n\n" in as_text.stdout
    assert f"entropix: {done.generated_tokens} tokens ({done.finish_reason})" in as_text.stdout
    assert "tok/s decode" in as_text.stdout and "first token" in as_text.stdout
    assert "states:" in as_text.stdout and "actions:" in as_text.stdout
    assert "\x1b[" not in as_text.stdout  # not a TTY: no colour
    assert as_text.stderr == ""


def test_compare_runs_both_modes_on_the_same_prompt_and_seed(tmp_path: Path):
    png = tmp_path / "sub" / "compare.png"
    args = ("--compare", "--seed", "11", "--max-tokens", "8")
    as_json = cli(*args, "--json", "--plot", str(png))
    as_text = cli(*args)
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    runs = runs_of(events_of(as_json.stdout))
    assert [done.mode for _, done in runs] == ["entropix", "normal"]
    assert all(t.mode == done.mode for tokens, done in runs for t in tokens)
    assert {done.seed for _, done in runs} == {11}
    assert len({done.prompt_tokens for _, done in runs}) == 1  # same prompt
    assert all(t.params.n_samples == 1 and t.action == "sample" for t in runs[1][0])
    for tokens, done in runs:
        assert "".join(t.text for t in tokens) == done.text
        assert f"\n{done.text}\n\n{done.mode}: {done.generated_tokens} tokens" in as_text.stdout
    assert "── entropix" in as_text.stdout and "── normal" in as_text.stdout
    table = as_text.stdout.split("\n\n")[-1]
    assert "entropix" in table and "normal" in table and "decode tok/s" in table
    for s in STATES:
        assert STATE_INFO[s].label in table
    with Image.open(png) as img:
        img.load()
        assert img.format == "PNG" and img.size == PNG_SIZE


def test_normal_mode_uses_the_given_parameters_and_greedy_takes_argmax():
    normal = cli(
        *("--normal", "--json", "--max-tokens", "6", "--seed", "1", "--temperature", "0.5"),
        *("--top-p", "0.8", "--top-k", "10", "--min-p", "0.05", "--top-logprobs", "2"),
    )
    greedy = cli("--greedy", "--json", "--max-tokens", "6", "--top-logprobs", "0")
    assert normal.returncode == 0 and greedy.returncode == 0, normal.stderr + greedy.stderr
    [(tokens, done)] = runs_of(events_of(normal.stdout))
    assert done.mode == "normal" and tokens
    want = SamplingParams(temperature=0.5, top_p=0.8, top_k=10, min_p=0.05)
    assert all(t.params == want and len(t.top) == 2 for t in tokens)
    [(tokens, done)] = runs_of(events_of(greedy.stdout))
    assert done.mode == "greedy" and all(t.action == "argmax" and not t.top for t in tokens)
    # Greedy continues the known answer of the embedded model.
    assert done.text.startswith("To solve this problem")


def test_config_file_sets_the_thresholds(tmp_path: Path):
    # Thresholds so high that every token is "flowing": entropix then always takes the argmax.
    cfg = tmp_path / "all_flowing.toml"
    cfg.write_text("[sampler]\nlow_ent = 1000.0\nlow_vent = 1000000.0\n")
    proc = cli("--config", str(cfg), "--json", "--max-tokens", "6", "--input", PROMPT)
    assert proc.returncode == 0, proc.stderr
    [(tokens, done)] = runs_of(events_of(proc.stdout))
    assert all(t.state == "flowing" and t.action == "argmax" for t in tokens)
    assert done.state_counts["flowing"] == len(tokens) == done.generated_tokens


def test_prompt_sets(tmp_path: Path):
    csv = tmp_path / "mine.csv"
    csv.write_text("name,prompt\nhi,Say hello.\nsum,What is 2 + 2?\n")
    mine = cli("--prompt_csv", str(csv), "--json", "--max-tokens", "3", "--seed", "2")
    builtin = cli("--prompts", "--limit", "2", "--max-tokens", "3", "--seed", "2")
    default_csv = cli("--prompt_csv", "--limit", "1", "--json", "--max-tokens", "3")
    assert mine.returncode == builtin.returncode == default_csv.returncode == 0, (
        mine.stderr + builtin.stderr + default_csv.stderr
    )
    assert [d.prompt_tokens > 0 for _, d in runs_of(events_of(mine.stdout))] == [True, True]
    assert "── entropix · larger_9_9" in builtin.stdout
    assert "── entropix · larger_3_45" in builtin.stdout
    assert len(runs_of(events_of(default_csv.stdout))) == 1
    # Several prompts: each JSON line says which prompt it belongs to; one prompt: unchanged.
    lines = [json.loads(line) for line in mine.stdout.splitlines()]
    assert [ln["prompt_index"] for ln in lines if ln["type"] == "done"] == [0, 1]
    assert all(list(ln)[0] == "prompt_index" for ln in lines)
    assert all("prompt_index" not in json.loads(ln) for ln in default_csv.stdout.splitlines())
    # ...and the text output ends with a table over all prompts.
    table = builtin.stdout.split("── all prompts")[1].splitlines()[1:]
    assert table[0].split()[:4] == ["prompt", "mode", "tokens", "tok/s"]
    assert "Confident" in table[0] and "In between" in table[0]
    rows = {r.split()[0]: r.split() for r in table[1:] if r and not r.startswith("-")}
    assert set(rows) == {"larger_9_9", "larger_3_45", "all"}
    assert rows["all"][3] == str(int(rows["larger_9_9"][2]) + int(rows["larger_3_45"][2]))
    assert all(cell.endswith("%") for cell in rows["larger_9_9"][4:])


def test_info_and_model_flag(tmp_path: Path, embedded):
    from tests.test_load import write_tiny_hf

    info = cli("--info")
    info_json = cli("--info", "--json")
    ckpt = write_tiny_hf(tmp_path / "tiny-hf", embedded.tokenizer)
    other = cli("--model", str(ckpt), "--info", "--json", "--max-tokens", "4", "--input", "Hi")
    assert info.returncode == info_json.returncode == other.returncode == 0, (
        info.stderr + info_json.stderr + other.stderr
    )
    keys = ("device:", "backend:", "BLAS:", "compiled:", "dtype:", "model:")
    for key in (*keys, "SmolLM2-135M-Instruct"):
        assert key in info.stdout
    data = json.loads(info_json.stdout)
    assert data["model"]["format"] == "gguf" and data["runtime"]["backend"]
    assert data["runtime"]["compiled_steps"] is True  # g++ is present on the test machines
    first, *rest = other.stdout.splitlines()
    assert json.loads(first)["model"]["format"] == "hf"
    [(tokens, done)] = runs_of(events_of("\n".join(rest)))
    assert done.generated_tokens == len(tokens) >= 1


def test_stop_string_and_colour_always():
    proc = cli("--greedy", "--max-tokens", "24", "--stop", "problem", "--color", "always")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[38;5;" in proc.stdout  # tokens and legend are coloured when forced
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    assert STATE_INFO["flowing"].label in plain.splitlines()[1]  # the legend line
    assert f"> {PROMPT}\nTo solve this \n\ngreedy: 4 tokens (stop_string)" in plain


# --- bad input -------------------------------------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    ("make_args", "needle"),
    [
        (lambda t: ["--bogus"], "unrecognized arguments: --bogus"),
        (lambda t: ["--prompt_csv", str(t / "missing.csv")], "prompt CSV not found"),
        (
            lambda t: ["--prompt_csv", _write(t, "x.csv", "name,text\na,b\n")],
            "no 'prompt' column",
        ),
        (lambda t: ["--input", ""], "the prompt is empty"),
        (lambda t: ["--input", "   "], "the prompt is empty"),
        # Rejected before the model loads: the bad model path is never reached.
        (lambda t: ["--input", " ", "--model", str(t / "nowhere")], "the prompt is empty"),
        (lambda t: ["--max-tokens", "0"], "--max-tokens must be at least 1 (got 0)"),
        (lambda t: ["--max-tokens", "-5"], "--max-tokens must be at least 1 (got -5)"),
        (lambda t: ["--input", "hello " * 9000], "the model's context is 8192 tokens"),
        (lambda t: ["--model", str(t / "nowhere")], "model path not found"),
        (lambda t: ["--config", str(t / "nope.json")], "config file not found"),
        (lambda t: ["--config", _write(t, "c.json", '{"bogus": 1}')], "bogus: Extra inputs"),
        # Found by use: an AttributeError traceback (exit 1).
        (lambda t: ["--config", _write(t, "l.json", "[1]")], "must be an object of name: value"),
        (lambda t: ["--temperature", "-1"], "invalid sampling parameter: temperature"),
        (lambda t: ["--preset", "loud"], "unknown preset 'loud' (choose from precise"),
        (lambda t: ["--max-tokens", "ten"], "invalid int value: 'ten'"),
        (lambda t: ["--input", "a", "--prompts"], "not allowed with argument"),
        # Found by use: --plot DIR was a traceback (exit 1) after the generation, and
        # --confidence-samples was checked after the load (and the header), as another name.
        (lambda t: ["--plot", str(t)], "it is a directory"),
        (lambda t: ["--confidence-samples", "17"], "--confidence-samples must lie in [0, 16]"),
        (lambda t: ["--confidence-samples", "-1", "--model", str(t / "no")], "(got -1)"),
        # Found by use: NaN was "temperature: Input should be less than or equal to 10"; seed
        # -1 (llama.cpp's "random") a fixed seed the server refuses, as one past 2^63 - 1.
        (lambda t: ["--temperature", "nan"], "argument --temperature: invalid finite value"),
        (lambda t: ["--top-p", "inf"], "argument --top-p: invalid finite value: 'inf'"),
        (lambda t: ["--seed", "-1", "--model", str(t / "no")], "--seed must lie in [0, 2^63 - 1]"),
        (lambda t: ["--seed", str(2**63)], "--seed must lie in [0, 2^63 - 1] (got 922"),
        # Found by use: "not valid Unicode: a lone surrogate U+DCE9" named no byte given.
        (lambda t: ["--input", os.fsdecode(b"caf\xe9")], "--input is not valid UTF-8 (byte 0xE9"),
        (lambda t: ["--system", os.fsdecode(b"\xff")], "--system is not valid UTF-8 (byte 0xFF"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, make_args, needle: str):
    args = make_args(tmp_path)
    if "--max-tokens" not in args:
        args += ["--max-tokens", "4"]  # should a case slip through, keep it short
    proc = cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mlx_main.py: error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    if not needle.startswith(("unrecognized", "invalid int", "not allowed", "argument --")):
        assert proc.stderr.strip() == errors[0]  # ours: exactly one line (argparse adds usage)
    assert "\x1b[" not in proc.stderr


# --- Ctrl-C ----------------------------------------------------------------------------------


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, MAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=ROOT,
    )


def _read_until(proc: subprocess.Popen, marker: bytes, timeout: float = 240) -> bytes:
    got, deadline = b"", time.monotonic() + timeout
    while marker not in got:
        assert time.monotonic() < deadline, got
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, got  # the process ended before the marker
        got += chunk
    return got


LONG = "Write a very long story about a dragon who learns to bake bread."


def test_ctrl_c_stops_cleanly_with_a_summary_json():
    proc = _start("--input", LONG, "--json", "--max-tokens", "3000", "--seed", "4")
    try:
        head = _read_until(proc, b'"index":2,')  # a few tokens are out
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    tokens, done = runs_of(events_of((head + rest).decode()))[0]
    assert done.finish_reason == "cancelled"
    assert 3 <= done.generated_tokens == len(tokens) < 3000
    assert "".join(t.text for t in tokens) == done.text


def test_ctrl_c_stops_cleanly_with_a_summary_text():
    proc = _start("--input", LONG, "--compare", "--max-tokens", "3000", "--seed", "4")
    try:
        head = _read_until(proc, f"> {LONG}\n".encode())
        head += os.read(proc.stdout.fileno(), 64)  # at least one token out
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    out = (head + rest).decode()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err
    assert re.search(r"entropix: \d+ tokens? \(cancelled\)", out) and "states:" in out  # 1 token
    assert "── normal" not in out  # the comparison's second run never starts


# --- stdout that cannot take the text -------------------------------------------------------

CAFE = ("--greedy", "--max-tokens", "3", "--input", "Complete: café, crème, naï")  # says "Café"


def test_an_ascii_stdout_prints_replaced_text_and_lossless_json():
    # Found by review: PYTHONIOENCODING=ascii (or a C locale without Python's UTF-8 mode) ended
    # in a UnicodeEncodeError traceback at the header's first '·'.
    ascii_env = {"PYTHONIOENCODING": "ascii"}
    text = cli(*CAFE, env=ascii_env)
    assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
    assert "Caf?" in text.stdout and "greedy: 3 tokens" in text.stdout  # '?' for 'é', as tools do
    escaped, plain = cli(*CAFE, "--json", env=ascii_env), cli(*CAFE, "--json")
    assert escaped.returncode == 0 and escaped.stdout.isascii(), escaped.stderr
    assert "\\u00e9" in escaped.stdout  # JSON keeps the text: escaped, not replaced
    texts = [[ev.text for ev in events_of(r.stdout)] for r in (escaped, plain)]
    assert texts[0] == texts[1] and texts[0][-1] == "Café"


def test_a_full_stdout_is_one_line_and_a_closed_pipe_is_quiet():
    # Found by review: `> /dev/full` ended in an OSError traceback (exit 1, and a second
    # "Exception ignored" at exit); `| head -1` stops quietly, as before.
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, MAIN, *CAFE], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr == "mlx_main.py: error: No space left on device\n", proc.stderr
    read, write = os.pipe()
    os.close(read)  # no reader: the first write fails
    try:
        proc = subprocess.run([sys.executable, MAIN, *CAFE], stdout=write,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# --- renderer and plot on hand-made events ---------------------------------------------------


def _event(i: int, state: str, ent: float, vent: float, text: str) -> TokenEvent:
    return TokenEvent(
        mode="entropix",
        index=i,
        id=i,
        text=text,
        state=state,
        action="sample",
        metrics=Metrics(
            entropy=ent,
            varentropy=vent,
            attn_entropy=1.0,
            attn_varentropy=0.1,
            agreement=0.01,
            interaction_strength=2.0,
        ),
        params=SamplingParams(temperature=0.7, top_p=0.9, top_k=27, min_p=0.03),
        logprob=-0.5,
        elapsed_s=0.01 * i,
    )


EVENTS = [
    _event(0, "flowing", 0.05, 0.05, "The"),
    _event(1, "treading", 6.0, 0.05, " answer"),
    _event(2, "exploring", 2.0, 8.0, " is"),
    _event(3, "resampling", 7.0, 9.0, " 9.9"),
    _event(4, "adaptive", 1.0, 1.0, ".\n"),
]


def _done(mode: str) -> DoneEvent:
    return DoneEvent(
        mode=mode,
        text="The answer is 9.9.\n",
        finish_reason="length",
        prompt_tokens=46,
        generated_tokens=5,
        ttft_s=0.2,
        total_s=0.4,
        prefill_tok_s=230.0,
        decode_tok_s=20.0,
        state_counts={s: 1 for s in STATES},
        action_counts={"sample": 5},
        seed=7,
    )


class _Tty:
    def __init__(self, tty: bool):
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_tty_without_no_color():
    assert Style.for_stream(_Tty(True), env={"TERM": "xterm"}).colour
    assert not Style.for_stream(_Tty(False), env={}).colour
    assert not Style.for_stream(_Tty(True), env={"NO_COLOR": "1"}).colour
    assert not Style.for_stream(_Tty(True), env={"TERM": "dumb"}).colour
    assert Style.for_stream(_Tty(False), "always", env={"NO_COLOR": "1"}).colour
    assert not Style.for_stream(_Tty(True), "never", env={}).colour
    true = Style.for_stream(_Tty(True), env={"COLORTERM": "truecolor"})
    assert true.truecolor and true.fg("#0072B2") == "\x1b[38;2;0;114;178m"


def test_state_colours_map_to_ansi():
    assert rgb_to_256(0, 0, 0) == 16 and rgb_to_256(255, 255, 255) == 231
    assert rgb_to_256(128, 128, 128) == 244  # the grey ramp beats the cube here
    style = Style(colour=True)
    codes = {token_text(e, style).split("m", 1)[0] for e in EVENTS}
    assert len(codes) == len(STATES)  # five distinct colours
    assert token_text(EVENTS[2], Style()) == " is"  # plain without colour
    assert all(STATE_INFO[s].label in legend(style) for s in STATES)
    narrow = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in legend(style, 60).splitlines()]
    assert len(narrow) > 1 and all(len(line) <= 60 for line in narrow)
    assert not any(line.startswith(" ") for line in narrow)


def test_summary_and_compare_table_without_colour():
    text = summary(_done("entropix"), Style())
    assert text.splitlines()[0] == "entropix: 5 tokens (length), seed 7"
    assert text.splitlines()[1].startswith("  speed:   20.0 tok/s decode")
    assert "first token 200 ms" in text and "seed 7" in text
    assert "Confident 1" in text and "argmax 0  sample 5  best_of_n 0  clarify 0" in text
    assert "prefill 46 tokens at 230 tok/s · total 400 ms" in text
    # Ctrl-C during the prefill: it said "prefill 3031 tokens at 3031000000000 tok/s".
    cut = _done("entropix").model_copy(update={"prefill_tok_s": 0.0, "generated_tokens": 0})
    assert "prefill 46 tokens not finished · total" in summary(cut, Style())
    one = _done("entropix").model_copy(update={"generated_tokens": 1, "prompt_tokens": 1})
    assert summary(one, Style()).startswith("entropix: 1 token (length)")  # not "1 tokens"
    assert "prefill 1 token at" in summary(one, Style())
    table = compare_table([_done("entropix"), _done("normal")], Style())
    assert table.splitlines()[0].split() == ["entropix", "normal"]
    assert "\x1b[" not in text + table


def test_prompts_table_without_decode_speed():
    # One generated token each (--max-tokens 1) or a cancelled run: no decode speed to sum.
    one = _done("entropix").model_copy(update={"generated_tokens": 1, "decode_tok_s": 0.0})
    table = prompts_table([("p1", one), ("p2", one)], Style())
    rows = [line.split() for line in table.splitlines()]
    assert rows[1][:4] == ["p1", "entropix", "1", "-"] and rows[-1][:5] == [
        "all",
        "(2)",
        "entropix",
        "2",
        "-",
    ]
    timed = prompts_table([("p1", one), ("p2", _done("entropix"))], Style())
    assert timed.splitlines()[-1].split()[:5] == ["all", "(2)", "entropix", "6", "20.0"]


def test_plot_paths_one_file_per_prompt(tmp_path: Path):
    # Found by use: two prompts of one name (or of names that sanitize alike, "q 1" and "q_1")
    # wrote the same file, the second plot over the first, while both 'plot:' lines named it.
    csv = tmp_path / "twice.csv"
    csv.write_text("name,prompt\nq,Say hello.\nq,Say bye.\n")
    proc = cli("--prompt_csv", str(csv), "--plot", str(tmp_path / "p.png"), "--max-tokens", "1")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.glob("p-*.png")) == ["p-q-2.png", "p-q.png"]

    from mlx_entropix.cli.plot import plot_paths

    assert plot_paths(Path("out/p.png"), ["only"]) == [Path("out/p.png")]
    got = plot_paths(Path("out/p.png"), ["q 1", "q_1", "x-4", "x", "x", "é/?"])
    want = ["p-q_1", "p-q_1-2", "p-x-4", "p-x", "p-x-5", "p-é__"]
    assert got == [Path(f"out/{w}.png") for w in want]
    assert plot_paths(Path("p"), ["a", "b"]) == [Path("p-a.png"), Path("p-b.png")]
    # A 300-character name: the save failed (file name too long) and the later prompts never ran.
    long = plot_paths(Path("p.png"), ["é" * 300, "é" * 301])  # 2 bytes each: 50 of them kept
    assert long == [Path(f"p-{'é' * 50}.png"), Path(f"p-{'é' * 50}-2.png")]


def test_plot_has_a_fixed_size_for_any_run(tmp_path: Path):
    cfg = SamplerConfig()
    for name, runs in [
        ("one", [("entropix", EVENTS)]),
        ("two", [("entropix", EVENTS), ("normal", EVENTS[:2])]),
        ("empty", [("entropix", [])]),
    ]:
        path = plot_runs(runs, cfg, tmp_path / f"{name}.png", title=PROMPT)
        with Image.open(path) as img:
            img.load()
            assert img.size == PNG_SIZE == (1400, 800)


def test_fork_flag_json_and_one_line_summary(tmp_path):
    # Fork at the first token (the shipped policy's trigger, set here explicitly).
    config = tmp_path / "first.json"
    config.write_text(json.dumps({**SamplerConfig.from_file("smollm2-135m-instruct").model_dump(),
                                  "fork_trigger": "first"}))  # fmt: skip
    args = ("--fork", "--input", "What is the capital of France?", "--max-tokens", "6",
            "--config", str(config))  # fmt: skip
    as_json = cli(*args, "--json")
    as_text = cli(*args)
    assert as_json.returncode == 0 and as_text.returncode == 0, as_json.stderr + as_text.stderr
    lines = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["type"] for e in lines][0] == "fork" and lines[-1]["type"] == "done"
    fork, done = lines[0], lines[-1]
    assert done["mode"] == "fork" and done["forks"] == 1
    assert sum(b["kept"] for b in fork["branches"]) == 1
    kept = fork["branches"][fork["kept"]]["text"]
    line = next(s for s in as_text.stdout.splitlines() if s.startswith("⑂ fork at 0 (first, "))
    assert line.count(" | ") == len(fork["branches"]) - 1
    assert f"[kept] {' '.join(kept.split())[:12]!r}"[:18] in line
    assert "tokens computed for" in as_text.stdout
    # the answers the branches reached, and which won, in both
    assert sum(g["won"] for g in fork["groups"]) == 1
    assert sum(g["branches"] for g in fork["groups"]) <= len(fork["branches"])
    assert "\n  answers (summed): " in as_text.stdout and "[won] " in as_text.stdout
