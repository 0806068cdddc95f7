"""``mlx_main.py --chat``: a conversation read line by line (stdin not a terminal here), each
turn's prompt the whole conversation so far, through one decoder with a prefix cache."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlx_entropix.cli.interrupt import Interrupt, PromptInterrupt
from mlx_entropix.errors import EntropixError, InvalidRequestError

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "mlx_main.py")
ENV = {**os.environ, "NO_COLOR": "1"}


def chat(turns: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, MAIN, "--chat", *args], input=turns, capture_output=True, text=True,
        env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip


def by_turn(stdout: str) -> dict[int, list[dict]]:
    turns: dict[int, list[dict]] = {}
    for line in stdout.splitlines():
        event = json.loads(line)
        turns.setdefault(event["turn"], []).append(event)
    return turns


def test_each_turn_answers_the_whole_conversation_and_reset_starts_anew():
    ask = "What is the capital of France?"
    got = chat(f"{ask}\nAnd of Italy?\n\n/reset\nAnd of Italy?\n/exit\nnever read\n",
               "--json", "--greedy", "--max-tokens", "6")  # fmt: skip
    assert got.returncode == 0, got.stderr
    turns = by_turn(got.stdout)
    assert sorted(turns) == [0, 1, 2]  # the empty line is no turn; nothing after /exit
    done = {t: events[-1] for t, events in turns.items()}
    for t, events in turns.items():
        assert done[t]["type"] == "done" and done[t]["mode"] == "greedy"
        assert "".join(e["text"] for e in events if e["type"] == "token") == done[t]["text"]
    # Turn 1 carries turn 0 (question and answer); after /reset the same line stands alone.
    history = done[0]["prompt_tokens"] + done[0]["generated_tokens"]
    assert done[1]["prompt_tokens"] > history
    assert done[2]["prompt_tokens"] < done[0]["prompt_tokens"] + 3
    assert done[2]["prompt_tokens"] < done[1]["prompt_tokens"] - done[0]["generated_tokens"]


def test_a_turn_over_the_context_is_an_error_and_the_conversation_goes_on():
    got = chat("word " * 9000 + "\nHi\n", "--greedy", "--max-tokens", "3")
    assert got.returncode == 0, got.stderr
    assert "error: the prompt is" in got.stderr and "Traceback" not in got.stderr
    assert "> Hi\n" in got.stdout and "3 tokens (length)" in got.stdout


def test_with_json_a_failed_turn_is_its_lines_error_event():
    got = chat("word " * 9000 + "\nHi\n", "--json", "--greedy", "--max-tokens", "2")
    assert got.returncode == 0, got.stderr
    turns = by_turn(got.stdout)
    assert [e["type"] for e in turns[0]] == ["error"]  # the first line's turn
    assert "the prompt is" in turns[0][0]["message"]
    assert turns[1][-1]["type"] == "done"  # the second line is turn 1


@pytest.mark.parametrize("flag", [["--compare"], ["--plot", "p.png"], ["--limit", "2"]])
def test_flags_a_conversation_cannot_take_are_one_line_exit_2(flag: list[str]):
    got = chat("Hi\n", *flag)
    assert got.returncode == 2
    assert got.stderr.startswith("mlx_main.py: error: --chat takes no")
    assert len(got.stderr.strip().splitlines()) == 1


def test_ctrl_c_stops_the_answer_not_the_conversation():
    """(--max-tokens 300, not 3000: the next turn's answer depends on where the SIGINT cut the
    story, which a busy machine moves; cut later, the 135M model's "Hi" answer can loop to the
    limit, minutes at 3000 tokens, past the timeout.)"""
    proc = subprocess.Popen(
        [sys.executable, MAIN, "--chat", "--json", "--max-tokens", "300", "--seed", "4"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT,
    )  # fmt: skip
    try:
        proc.stdin.write(b"Write a very long story about a dragon.\n")
        proc.stdin.flush()
        got, deadline = b"", time.monotonic() + 240
        while b'"index":2,' not in got:  # a few tokens are out
            assert time.monotonic() < deadline, got
            got += os.read(proc.stdout.fileno(), 4096)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(b"Hi\n", timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    turns = by_turn((got + rest).decode())
    assert turns[0][-1]["finish_reason"] == "cancelled"
    assert turns[1][-1]["type"] == "done" and turns[1][-1]["finish_reason"] != "cancelled"


def test_one_ctrl_c_under_uv_run_is_two_signals_and_one_stop():
    """uv forwards the terminal's SIGINT: the second, at once, is the same Ctrl-C; a later
    one is a second Ctrl-C (KeyboardInterrupt, for a stuck prefill or load)."""
    interrupt = Interrupt()
    interrupt(signal.SIGINT, None)
    interrupt(signal.SIGINT, None)  # the forwarded copy: no exception
    assert interrupt.requested and interrupt.stop_now()
    interrupt.at -= 1.0
    with pytest.raises(KeyboardInterrupt):
        interrupt(signal.SIGINT, None)


def test_the_next_turn_reuses_the_conversation_from_the_prefix_cache():
    long = "Summarise this: " + " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    got = chat(f"{long}\nThanks.\n", "--json", "--greedy", "--max-tokens", "3")
    assert got.returncode == 0, got.stderr
    first, second = (events[-1] for events in by_turn(got.stdout).values())
    assert first["cached_tokens"] == 0 and first["prompt_tokens"] > 200
    # the whole first prompt and the answer (filled in after the turn) are reused
    assert second["cached_tokens"] >= first["prompt_tokens"] - 16


def test_ctrl_c_at_the_prompt_drops_the_line_once_per_ctrl_c():
    at_prompt = PromptInterrupt()
    with pytest.raises(KeyboardInterrupt):
        at_prompt(signal.SIGINT, None)
    at_prompt(signal.SIGINT, None)  # uv's forwarded copy: ignored
    at_prompt.at -= 1.0
    with pytest.raises(KeyboardInterrupt):  # the next Ctrl-C
        at_prompt(signal.SIGINT, None)


def chat_here(lm, turns: str | io.TextIOBase, *flags: str) -> tuple[int, str, str]:
    """``chat`` in this process on ``turns`` (read as a pipe): its status, stdout, stderr."""
    from mlx_entropix.cli.args import argv_text
    from mlx_entropix.cli.chat import chat as run_chat
    from mlx_entropix.cli.chat import check_chat
    from mlx_entropix.cli.main import build_parser, modes_for, read_config
    from mlx_entropix.cli.terminal import Style

    args = build_parser().parse_args(["--chat", "--greedy", "--max-tokens", "2", *flags])
    inp = io.StringIO(turns) if isinstance(turns, str) else turns
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        argv_text(args)  # as main.run, before check_chat
        check_chat(args, None)
        cfg = read_config(args, lambda: lm.default_config)
        code = run_chat(lm, args, cfg, modes_for(args)[0], out, Style(), inp=inp)
    return code, out.getvalue(), err.getvalue()


def test_ctrl_c_as_an_answer_ends_stops_the_cache_filling_not_the_conversation(
    embedded, monkeypatch
):
    """After each answer the prefix cache is filled (seconds for a long conversation) before
    the next prompt: a Ctrl-C then (the answer just ended) ended the whole conversation."""
    from mlx_entropix.engine.batch import BatchDecoder

    fill, calls = BatchDecoder.idle_step, []

    def ctrl_c_during_the_fill(self):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return fill(self)

    monkeypatch.setattr(BatchDecoder, "idle_step", ctrl_c_during_the_fill)
    before = signal.getsignal(signal.SIGINT)
    code, out, _ = chat_here(embedded, "Hi\nAnd again?\n")
    assert code == 0
    assert out.count("2 tokens (length)") == 2  # both turns answered
    assert len(calls) >= 2 and signal.getsignal(signal.SIGINT) is before  # handler given back


def test_lines_not_utf8_are_a_turn_error_and_crlf_lines_lose_their_cr(embedded):
    """Piped bytes that are not UTF-8: a clear error for that line (a strict stdin, macOS's
    default, raised a UnicodeDecodeError traceback), UTF-8 read as such whatever the
    locale's codec; a Windows line ending is no part of the message."""
    raw = "H\xe9llo\n".encode("latin-1") + "caf\u00e9 \U0001f409\r\n/exit\r\nnever\n".encode()
    for codec in ("utf-8", "ascii"):
        inp = io.TextIOWrapper(io.BytesIO(raw), encoding=codec, errors="strict")
        code, out, err = chat_here(embedded, inp, "--json")
        assert code == 0
        assert "error: the line is not valid UTF-8 (byte 0xE9 at byte 1)" in err, err
        done = [json.loads(line) for line in out.splitlines()]
        # the bad line is turn 0 (its error event), the next line turn 1
        assert [e["turn"] for e in done] == [0, 1, 1, 1]
        assert done[0]["type"] == "error" and done[-1]["type"] == "done"
    code, out, _ = chat_here(embedded, "caf\u00e9 \U0001f409\r\n")
    assert "> caf\u00e9 \U0001f409\n" in out


def test_a_system_message_no_turn_can_take_is_refused_at_the_start(embedded):
    """--system longer than the context (or not UTF-8) made every turn an error, exit 0;
    now one error before the first turn (main: exit 2)."""
    with pytest.raises(EntropixError, match="^--system: the prompt is 90"):
        chat_here(embedded, "Hi\n", "--system", "word " * 9000)
    with pytest.raises(InvalidRequestError, match=r"^--system is not valid UTF-8 \(byte 0xE9"):
        chat_here(embedded, "Hi\n", "--system", os.fsdecode(b"\xe9t\xe9"))


def test_the_reset_hint_only_when_the_line_alone_fits(embedded, monkeypatch):
    """A line longer than the context by itself: /reset cannot help, so no hint to it."""
    monkeypatch.setattr(embedded.info, "context_length", 80)  # a conversation soon outgrows it
    _, out, err = chat_here(embedded, "Hi\n" + "word " * 100 + "\n")
    assert "2 tokens (length)" in out
    assert "error: the prompt is" in err and "/reset" not in err
    _, out, err = chat_here(embedded, "Hi\n" + "word " * 40 + "\n/reset\n" + "word " * 40 + "\n")
    assert "error: the prompt is" in err and "(/reset starts anew)" in err
    assert out.count("2 tokens (length)") == 2  # after /reset the same line fits
