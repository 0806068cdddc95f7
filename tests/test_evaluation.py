"""The evaluation harness: statistics against hand-computed values, a tiny CSV end to end with a
fake generator (known outcomes), CSV validation, reports, the data sets, and one short real run
that must be identical twice with the same seed."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

from mlx_entropix.eval.harness import (
    Generation,
    Item,
    build_prompt,
    engine_generate_fn,
    evaluate,
    item_seed,
    load_items,
)
from mlx_entropix.eval.main import main
from mlx_entropix.eval.report import plot, to_markdown
from mlx_entropix.eval.stats import paired_difference, wilson, without_timings

import pytest

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- statistics


def test_wilson_hand_computed():
    # p = 0.5, n = 100: centre 0.5, half = 1.96/(1+1.96^2/100) * sqrt(0.25/100 + 1.96^2/40000)
    lo, hi = wilson(0.5, 100)
    half = 1.959964 / 1.0384146 * math.sqrt(0.0025 + 3.8414588 / 40000)
    assert lo == pytest.approx(0.5 - half, abs=1e-6)
    assert hi == pytest.approx(0.5 + half, abs=1e-6)
    assert (lo, hi) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    # Textbook values: 8/10 -> [0.490, 0.943]; 0/10 -> [0, 0.278].
    assert wilson(0.8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(0.5, 0) == (0.0, 1.0)


def test_paired_difference_hand_computed():
    # d = [1, 0, 0, 1]: mean 0.5, sd = sqrt(4 * 0.25 / 3), half = 1.96 * sd / 2
    out = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])
    half = 1.959964 * math.sqrt(1 / 3) / 2
    assert out["mean"] == 0.5
    assert out["ci95"] == pytest.approx([0.5 - half, 0.5 + half], abs=1e-6)
    assert (out["wins"], out["losses"], out["ties"]) == (2, 0, 2)
    same = paired_difference([0.5, 1.0], [0.5, 1.0])
    assert same["mean"] == 0 and same["ci95"] == [0, 0] and same["ties"] == 2
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])


def test_item_seed_is_paired_and_distinct():
    seeds = {item_seed(0, i, j) for i in range(200) for j in range(4)}
    assert len(seeds) == 800
    assert item_seed(3, 5, 1) == item_seed(3, 5, 1)
    assert all(0 <= s < 2**31 for s in seeds)


# --------------------------------------------------------------------------- end to end (fake)


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture()
def tiny_csv(tmp_path: Path) -> Path:
    return _write_csv(
        tmp_path / "tiny.csv",
        [
            {"prompt": "2 + 2 =", "answer": "4", "kind": "", "category": "math"},
            {"prompt": "Capital of France?", "answer": "Paris", "kind": "", "category": "fact"},
            {"prompt": "Is 3 > 2?", "answer": "yes", "kind": "yesno", "category": "math"},
            {"prompt": "Pick: A) x B) y", "answer": "B", "kind": "choice", "category": "fact"},
        ],
    )


# What the fake model says: greedy is right on items 0, 1; entropix on 0, 1, 2 with its first
# seed and 0, 1 with its second; normal is always wrong.
def fake_generate(item: Item, mode: str, seed: int) -> Generation:
    right = {
        0: "The answer is 4.",
        1: "It is Paris.",
        2: "Yes.",
        3: "(B)",
    }[item.index]
    if mode == "greedy":
        ok = item.index in (0, 1)
    elif mode == "entropix":
        ok = item.index in (0, 1) or (item.index == 2 and seed == item_seed(7, 2, 0))
    else:
        ok = False
    states = {"flowing": 2, "adaptive": 1} if mode == "entropix" else {"flowing": 3}
    return Generation(text=right if ok else "no idea", tokens=3, seconds=0.5, state_counts=states)


def test_end_to_end_known_outcomes(tiny_csv: Path, tmp_path: Path):
    items = load_items(tiny_csv)
    assert [i.kind for i in items] == ["numeric", "contains", "yesno", "choice"]
    result = evaluate(items, fake_generate, seeds=2, base_seed=7, progress=False, meta={})
    s = result["summary"]
    assert len(result["records"]) == 4 * (1 + 2 + 2)  # greedy once, sampled modes twice
    assert s["greedy"]["accuracy"] == 0.5
    assert s["normal"]["accuracy"] == 0.0
    # entropix item scores: 1, 1, 0.5, 0 -> 0.625
    assert s["entropix"]["accuracy"] == 0.625
    assert s["entropix"]["accuracy_per_seed"] == [0.75, 0.5]
    assert s["entropix"]["accuracy_per_category"] == {"fact": 0.5, "math": 0.75}
    assert s["greedy"]["ci95"] == pytest.approx(list(wilson(0.5, 4)))
    d = s["entropix"]["vs_greedy"]  # d = [0, 0, 0.5, 0]
    half = 1.959964 * math.sqrt(((0.125**2) * 3 + 0.375**2) / 3) / 2
    assert d["mean"] == 0.125
    assert d["ci95"] == pytest.approx([0.125 - half, 0.125 + half], abs=1e-6)
    assert (d["wins"], d["losses"], d["ties"]) == (1, 0, 3)
    assert s["normal"]["vs_greedy"]["losses"] == 2
    assert "vs_greedy" not in s["greedy"]
    assert s["entropix"]["state_counts"]["adaptive"] == 8
    assert s["entropix"]["mean_tokens"] == 3 and s["entropix"]["tok_s"] == 6.0
    assert s["greedy"]["time_s"] == 2.0

    # Reports: a markdown table with every mode, and a PNG.
    result["run"].update(csv=str(tiny_csv), model="fake", max_tokens=8)
    md = to_markdown(result)
    assert "| entropix | 62.5 |" in md and "+12.5" in md and "| math |" in md
    plot(result, tmp_path / "eval.png")
    assert (tmp_path / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_greedy_no_mode_is_called_the_baseline(tiny_csv: Path):
    # Found by use: "--modes entropix" (or normal,entropix) marked every mode "baseline" in
    # the "Δ vs greedy" column, a comparison that was never made.
    result = evaluate(
        load_items(tiny_csv), fake_generate, modes=["normal", "entropix"], progress=False
    )
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    rows = [r.split("|") for r in to_markdown(result).splitlines() if r.startswith("| normal")]
    assert rows and rows[0][4].strip() == "-" and "baseline" not in to_markdown(result)
    with_greedy = evaluate(load_items(tiny_csv), fake_generate, progress=False)
    with_greedy["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    assert "| greedy |" in to_markdown(with_greedy) and "baseline" in to_markdown(with_greedy)


def test_rerender_from_json(tiny_csv: Path, tmp_path: Path, capsys):
    result = evaluate(load_items(tiny_csv), fake_generate, seeds=1, progress=False)
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    saved = tmp_path / "res.json"
    saved.write_text(json.dumps(result))
    assert main([str(saved), "--png", str(tmp_path / "re.png")]) == 0
    assert (tmp_path / "res.md").read_text().startswith("**tiny.csv**")
    assert (tmp_path / "re.png").exists()
    (tmp_path / "junk.json").write_text("[1, 2]")
    capsys.readouterr()
    assert main([str(tmp_path / "junk.json")]) == 2
    assert "is not an evaluation result" in capsys.readouterr().err


def test_rerender_names_the_files_it_wrote(tiny_csv: Path, tmp_path: Path, capsys):
    # Found by use: it listed <out>.json, which a redraw does not write, and "--png fig" while
    # matplotlib wrote fig.png; a JSON object of other keys was a KeyError traceback.
    result = evaluate(load_items(tiny_csv), fake_generate, seeds=1, progress=False)
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    saved = tmp_path / "res.json"
    saved.write_text(json.dumps(result))
    assert main([str(saved), "--out", str(tmp_path / "o"), "--png", str(tmp_path / "fig")]) == 0
    wrote = capsys.readouterr().out.strip().splitlines()[-1].removeprefix("wrote ").split(", ")
    assert wrote[:2] == [str(tmp_path / "o.md"), str(tmp_path / "fig.png")]
    assert all(Path(p).is_file() for p in wrote)
    (tmp_path / "other.json").write_text('{"summary": {}, "run": {}}')
    assert main([str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval: error: ") and "is not an evaluation result" in err, err


def test_a_closed_stdout_pipe_is_quiet(tiny_csv: Path, tmp_path: Path):
    # Found by use: `benchmarks/eval.py ... | head -1` ended in a BrokenPipeError traceback,
    # exit 1 (the files were written); mlx_main.py stops quietly.
    result = evaluate(load_items(tiny_csv), fake_generate, seeds=1, progress=False)
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    (tmp_path / "res.json").write_text(json.dumps(result))
    read, write = os.pipe()
    os.close(read)  # no reader: the first write fails
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks/eval.py"), str(tmp_path / "res.json")],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "res.md").is_file() and (tmp_path / "res.png").is_file()


def test_an_ascii_or_full_stdout_prints_or_is_one_line(tiny_csv: Path, tmp_path: Path):
    # Found by review: PYTHONIOENCODING=ascii ended the redraw in a UnicodeEncodeError traceback
    # at the table's 'Δ'; a stdout on a full disk in an OSError one.
    result = evaluate(load_items(tiny_csv), fake_generate, seeds=1, progress=False)
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    (tmp_path / "res.json").write_text(json.dumps(result))
    cmd = [sys.executable, str(ROOT / "benchmarks/eval.py"), str(tmp_path / "res.json")]
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "? vs greedy" in proc.stdout and "wrote " in proc.stdout
    (tmp_path / "res.md").unlink()
    with open("/dev/full", "w") as full:
        proc = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr == "eval: error: No space left on device\n"
    assert "Δ vs greedy" in (tmp_path / "res.md").read_text(encoding="utf-8")  # files kept


def test_result_files_are_utf8_whatever_the_locale(tiny_csv: Path, tmp_path: Path):
    # Found by review: in an ASCII locale (LC_ALL=C, PYTHONUTF8=0) the result JSON (a model's
    # text), its table ('Δ') and a redraw's read used the locale's encoding: a traceback, and
    # after a run the results lost.
    result = evaluate(load_items(tiny_csv), fake_generate, seeds=1, progress=False)
    result["run"].update(csv="tiny.csv", model="fake", max_tokens=8)
    result["records"][0]["text"] = "réponse: 4"
    (tmp_path / "res.json").write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    cmd = [sys.executable, str(ROOT / "benchmarks/eval.py"), str(tmp_path / "res.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "Δ vs greedy" in (tmp_path / "res.md").read_text(encoding="utf-8")


def test_interrupt_keeps_complete_items(tiny_csv: Path):
    def flaky(item: Item, mode: str, seed: int) -> Generation:
        if item.index == 2 and mode == "entropix":
            raise KeyboardInterrupt
        return fake_generate(item, mode, seed)

    result = evaluate(load_items(tiny_csv), flaky, seeds=2, base_seed=7, progress=False)
    assert result["run"]["interrupted"] and result["run"]["n_items"] == 2
    assert {r["item"] for r in result["records"]} == {0, 1}  # item 2 was incomplete: dropped
    assert result["summary"]["entropix"]["n_items"] == 2


def test_an_error_mid_run_keeps_complete_items_and_names_it(tiny_csv: Path):
    # Found by review: only Ctrl-C kept the finished items; an error on one item (out of
    # memory, an MLX error, a bug) lost them all in a traceback.
    def flaky(item: Item, mode: str, seed: int) -> Generation:
        if item.index == 2 and mode == "entropix":
            raise RuntimeError("[metal] out of memory\nmore detail")
        return fake_generate(item, mode, seed)

    result = evaluate(load_items(tiny_csv), flaky, seeds=2, base_seed=7, progress=False)
    assert result["run"]["interrupted"] and result["run"]["n_items"] == 2
    assert {r["item"] for r in result["records"]} == {0, 1}  # as on Ctrl-C
    seed = item_seed(7, 2, 0)
    want = f"RuntimeError: [metal] out of memory (item 2, mode entropix, seed {seed})"
    assert result["run"]["error"] == want
    assert "error" not in evaluate(load_items(tiny_csv), fake_generate, progress=False)["run"]


def test_an_error_mid_run_writes_the_files_and_exits_1(
    tiny_csv: Path, tmp_path: Path, embedded, monkeypatch, capsys
):
    import mlx_entropix.eval.main as eval_main
    import mlx_entropix.io.load

    real = eval_main.engine_generate_fn

    def failing_on_item_1(*args, **kwargs):
        gen = real(*args, **kwargs)

        def fn(item: Item, mode: str, seed: int) -> Generation:
            if item.index == 1:
                raise ValueError("a bug on one item")
            return gen(item, mode, seed)

        return fn

    monkeypatch.setattr(mlx_entropix.io.load, "load", lambda model=None: embedded)
    monkeypatch.setattr(eval_main, "engine_generate_fn", failing_on_item_1)
    out = tmp_path / "o"
    args = [str(tiny_csv), "--modes", "greedy", "--max-tokens", "2", "--out", str(out), "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err == "eval: error: ValueError: a bug on one item (item 1, mode greedy, seed 7919); "\
        "results cover the first 1 complete items", err  # fmt: skip
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["run"]["interrupted"] and saved["run"]["error"].startswith("ValueError")
    assert [r["item"] for r in saved["records"]] == [0]
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").is_file()


def test_excel_bom_csv(tmp_path: Path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffprompt,answer\n2 + 2 =,4\n".encode())
    assert load_items(path)[0].answer == "4"


def test_header_case_and_spaces_as_in_prompt_csvs(tmp_path: Path):
    # Found by use: "Prompt, Answer" was refused as "missing: answer, prompt".
    path = tmp_path / "caps.csv"
    path.write_text("Prompt, Answer ,KIND\n2 + 2 =,4,exact\n")
    (item,) = load_items(path)
    assert (item.prompt, item.answer, item.kind) == ("2 + 2 =", "4", "exact")


def test_same_seed_same_result_with_fake(tiny_csv: Path):
    items = load_items(tiny_csv)
    a = evaluate(items, fake_generate, seeds=2, base_seed=7, progress=False)
    b = evaluate(items, fake_generate, seeds=2, base_seed=7, progress=False)
    assert without_timings(a) == without_timings(b)
    assert "wall_s" in a["run"] and "wall_s" not in without_timings(a)["run"]


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"question": "q", "answer": "1"}], "needs the columns prompt and answer"),
        ([{"prompt": "q", "answer": ""}], "row 2: empty prompt or answer"),
        ([{"prompt": "q", "answer": "1", "kind": "fuzzy"}], "unknown kind 'fuzzy'"),
        ([{"prompt": "q", "answer": "one", "kind": "numeric"}], "not a number"),
        ([{"prompt": "q", "answer": "1", "format": "xml"}], "unknown format 'xml'"),
    ],
)
def test_bad_csv_one_clear_line(tmp_path: Path, rows, message):
    from mlx_entropix.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=re.escape(message)) as err:
        load_items(_write_csv(tmp_path / "bad.csv", rows))
    assert "\n" not in str(err.value)


def test_cli_bad_input_exits_2(tmp_path: Path, capsys):
    assert main([str(tmp_path / "missing.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("eval: error: cannot read evaluation CSV") and "\n" not in err
    assert main([str(tmp_path / "missing.csv"), "--modes", "greedy,beam"]) == 2
    assert "unknown mode" in capsys.readouterr().err


def test_bad_output_path_or_option_fails_before_the_load(tiny_csv: Path, tmp_path: Path, capsys):
    # Found by use: these failed only after the whole run (a traceback, results lost) or
    # were taken silently (fork skips the engine's range check of --confidence-samples).
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    base = [str(tiny_csv), "--quiet", "--modes", "greedy", "--max-tokens", "2"]
    for extra, needle in [
        (["--out", str(blocker / "res")], f"cannot write the results {blocker / 'res'}.json"),
        (["--png", str(tmp_path)], f"cannot write the PNG {tmp_path}: it is a directory"),
        (["--png", str(tmp_path / "f.v2")], "unknown image type .v2"),
        (["--modes", "fork", "--confidence-samples", "17"], "--confidence-samples must lie in"),
        (["--seeds", "0"], "--seeds must be at least 1 (got 0)"),  # was checked after the load
    ]:
        rc = main([*base, "--out", str(tmp_path / "r"), *extra, "--model", str(tmp_path / "no")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and err.startswith("eval: error: ") and needle in err, err
        assert "\n" not in err
    assert not (tmp_path / "r.json").exists()


def test_bad_config_is_one_line(tiny_csv: Path, tmp_path: Path, capsys):
    # Found by use: a pydantic error of several lines, and a JSON list's AttributeError text.
    for name, text, needle in [
        ("t.json", '{"temperature": "hot"}', "temperature: Input should be a valid number"),
        ("l.json", "[1]", "must be an object of name: value, not [1]"),
        ("s.toml", "sampler = 5", "must be an object of name: value, not 5"),
    ]:
        (tmp_path / name).write_text(text)
        assert main([str(tiny_csv), "--quiet", "--config", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("eval: error: cannot use sampler config") and needle in err, err
        assert "\n" not in err


def test_too_long_prompt_fails_before_any_item_with_its_row(tmp_path: Path, capsys):
    # It failed at its turn, after the items before it, whose results were then lost, and the
    # message did not say which row.
    rows = [{"prompt": "2 + 2 =", "answer": "4"}, {"prompt": "word " * 9000, "answer": "6"}]
    path = _write_csv(tmp_path / "long.csv", rows)
    out = tmp_path / "res"
    rc = main([str(path), "--quiet", "--modes", "greedy", "--max-tokens", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith(f"eval: error: {path}, row 3: the prompt is "), err
    assert "the model's context is 8192 tokens" in err and "\n" not in err


def test_raw_format_keeps_prompt_whitespace(tmp_path: Path):
    path = _write_csv(tmp_path / "raw.csv", [{"prompt": "1 + 1 = 2\n2 + 2 =", "answer": "4"}])
    (item,) = load_items(path, default_format="raw")
    assert item.format == "raw" and item.prompt == "1 + 1 = 2\n2 + 2 ="


# --------------------------------------------------------------------------- data sets


def _make_sets():
    spec = importlib.util.spec_from_file_location("make_sets", ROOT / "data/eval/make_sets.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_data_sets_are_reproducible_and_verifiable():
    mod = _make_sets()
    sets = mod.build()
    assert sets == mod.build()  # deterministic
    assert len(sets["core"]) >= 100
    for name, rows in sets.items():
        on_disk = list(csv.DictReader((ROOT / f"data/eval/{name}.csv").open(newline="")))
        assert on_disk == rows, f"data/eval/{name}.csv is stale: run data/eval/make_sets.py"
        load_items(ROOT / f"data/eval/{name}.csv")  # valid for the harness
    for r in sets["add_1digit"] + sets["mul_1digit"]:
        a, op, b = re.fullmatch(r"(\d) ([+x]) (\d) =", r["prompt"].splitlines()[-1]).groups()
        assert int(r["answer"]) == (int(a) + int(b) if op == "+" else int(a) * int(b))
    for r in sets["word_problem"]:
        a, b = map(int, re.findall(r"\d+", r["prompt"].splitlines()[-2]))
        gives = "gives away" in r["prompt"].splitlines()[-2]
        assert int(r["answer"]) == (a - b if gives else a + b)
    for r in sets["larger_2digit"]:
        a, b = map(int, re.findall(r"\d+", r["prompt"].splitlines()[-2]))
        assert int(r["answer"]) == max(a, b)


def questions(prompt: str) -> set[str]:
    """Every question a prompt asks or shows solved, by identity: the operands of a sum or a
    product (either order), the pair of a comparison, a word problem's operation and operands,
    a country, and a city offered as an option. Read from the text, not from make_sets.py."""
    found = {f"{op}:{sorted((int(a), int(b)))}"
             for a, op, b in re.findall(r"(\d+) ([+x]) (\d+) =", prompt)}  # fmt: skip
    found |= {f"larger:{sorted((int(a), int(b)))}"
              for a, b in re.findall(r"larger, (\d+) or (\d+)\?", prompt)}  # fmt: skip
    found |= {f"{verb}:{a},{b}"
              for a, verb, b in re.findall(r"has (\d+) [a-z ]+ and (gets|gives away) (\d+)",
                                           prompt)}  # fmt: skip
    found |= {f"country:{c}" for c in re.findall(r"capital of ([A-Z][A-Za-z ]+)\?", prompt)}
    found |= {f"city:{c}" for c in re.findall(r"^[AB]\) (.+)$", prompt, re.MULTILINE)}
    return found


def test_dev_and_test_splits_share_no_question():
    dev = [r["prompt"] for r in csv.DictReader((ROOT / "data/eval/dev.csv").open(newline=""))]
    test = [r["prompt"] for r in csv.DictReader((ROOT / "data/eval/core.csv").open(newline=""))]
    dev_q = set().union(*map(questions, dev))
    test_q = set().union(*map(questions, test))
    assert all(questions(p) for p in dev + test)  # every item's question was recognised
    assert len(dev) == 240 and len(test) == 120
    assert dev_q & test_q == set()
    kinds = {q.split(":")[0] for q in dev_q | test_q}  # every task's questions were compared
    assert kinds == {"+", "x", "larger", "gets", "gives away", "country", "city"}


# --------------------------------------------------------------------------- the real model


def test_build_prompt_formats(embedded):
    raw = Item(0, "2 + 2 =", "4", "numeric", format="raw")
    shot = Item(1, "1 + 1 =", "2", "numeric", format="raw")
    ids = build_prompt(embedded.tokenizer, raw, None, [shot])
    assert embedded.tokenizer.decode(ids).endswith("1 + 1 = 2\n2 + 2 =")
    chat = Item(0, "Capital of France?", "Paris", "contains")
    msgs = build_prompt(embedded.tokenizer, chat, "Be brief.", [Item(1, "Q?", "A|B", "contains")])
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "A"


def test_real_model_run_is_deterministic(embedded, tmp_path: Path):
    items = load_items(ROOT / "data/eval/core.csv")[:2]  # two raw few-shot additions
    gen = engine_generate_fn(embedded, max_tokens=4)
    a = evaluate(items, gen, seeds=1, base_seed=3, progress=False)
    b = evaluate(items, gen, seeds=1, base_seed=3, progress=False)
    assert without_timings(a) == without_timings(b)
    assert len(a["records"]) == 2 * 3
    for r in a["records"]:
        assert "\n" not in r["text"] and r["tokens"] <= 4
        assert sum(r["state_counts"].values()) == r["tokens"]
    json.dumps(a)  # JSON-ready


def test_fork_mode_runs_once_and_records_tokens_computed(tiny_csv: Path):
    from mlx_entropix.eval.harness import DETERMINISTIC

    def fake(item: Item, mode: str, seed: int) -> Generation:
        computed = 9 if mode == "fork" else 0
        return Generation(text="no idea", tokens=3, seconds=0.5, tokens_computed=computed)

    items = load_items(tiny_csv)
    result = evaluate(items, fake, modes=["greedy", "fork"], seeds=2, progress=False, meta={})
    assert "fork" in DETERMINISTIC and len(result["records"]) == 4 * 2
    s = result["summary"]
    assert s["fork"]["mean_tokens_computed"] == 9 and s["greedy"]["mean_tokens_computed"] == 3
