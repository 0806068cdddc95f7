"""Choosing the confidence map by leave-one-category-out: the isotonic map, the recalibration,
the choosing rule, the --select command end to end, and the dev-only calibration set."""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import re
from pathlib import Path

from mlx_entropix.engine.confidence import (
    ATTENTION_FEATURES,
    CONFIDENCE_DIR,
    CONTEXT_FEATURES,
    FORMAT_FEATURE,
    LOGIT_FEATURES,
    ConfidenceModel,
    IsotonicMap,
    LogisticMap,
)
from mlx_entropix.eval.confidence_select import (
    Candidate,
    bootstrap,
    capped,
    check_cap,
    choose,
    fit_candidate,
    fit_isotonic,
    leave_category_out,
)
from mlx_entropix.eval.confidence_stats import auroc, ece

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _known(n: int, seed: int, cats: int = 4, shift: float = 0.0) -> tuple[list[dict], np.ndarray]:
    """P(right | s) = sigmoid(-1 + 2 s) (+ ``shift`` * category index: kinds of question that
    differ in difficulty the score does not see)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 1.2, n)
    cat = rng.integers(0, cats, n)
    p = 1 / (1 + np.exp(-(-1 + 2 * s + shift * cat)))
    y = rng.random(n) < p
    recs = [{"features": {"mean_logprob": float(v)}, "correct": bool(c), "category": f"c{k}",
             "format": "raw"} for v, c, k in zip(s, y, cat, strict=True)]  # fmt: skip
    return recs, p


def test_isotonic_map_interpolates_monotonically_and_round_trips(tmp_path: Path):
    m = IsotonicMap("mean_logprob", (-2.0, 0.0, 1.0), (0.1, 0.5, 0.9))
    assert m({"mean_logprob": -1.0}) == pytest.approx(0.3)
    assert m({"mean_logprob": -9.0}) == 0.1 and m({"mean_logprob": 9.0}) == 0.9
    assert m({"mean_logprob": None}) is None and m({}) is None
    grid = [m({"mean_logprob": v}) for v in np.linspace(-3, 2, 40)]
    assert all(b >= a for a, b in zip(grid, grid[1:], strict=False))
    model = ConfidenceModel({"raw": m, "chat": m}, {"x": 1})
    path = tmp_path / "m.json"
    path.write_text(model.to_json())
    back = ConfidenceModel.from_file(path)
    assert back.maps["raw"] == m and back({"mean_logprob": 0.5}, "raw") == pytest.approx(0.7)
    bad = json.loads(model.to_json())
    bad["maps"]["raw"]["p"] = [0.9, 0.5, 0.1]  # decreasing: not a monotone map
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="non-decreasing"):
        ConfidenceModel.from_file(path)


def test_fit_isotonic_recovers_known_probabilities():
    recs, _ = _known(6000, 0)
    x = [r["features"]["mean_logprob"] for r in recs]
    y = [r["correct"] for r in recs]
    m = fit_isotonic(x, y, "mean_logprob")
    assert list(m.p) == sorted(m.p) and 0 < m.p[0] and m.p[-1] < 1  # monotone, never 0 or 1
    test, p_true = _known(4000, 1)
    p_fit = np.array([m(r["features"]) for r in test])
    assert np.abs(p_fit - p_true).mean() < 0.04
    assert ece(p_fit, [r["correct"] for r in test]) < 0.04


def test_format_indicator_reaches_a_pooled_map():
    m = LogisticMap(("mean_logprob", FORMAT_FEATURE), (0.0, 0.0), (1.0, 1.0), (0.0, 2.0), 0.0)
    model = ConfidenceModel({"chat": m, "raw": m}, {})
    assert model({"mean_logprob": 0.0}, "chat") == pytest.approx(0.5)
    assert model({"mean_logprob": 0.0}, "raw") == pytest.approx(1 / (1 + np.exp(-2)))


def test_leave_category_out_never_sees_the_held_out_labels():
    recs, _ = _known(800, 2)
    c = Candidate("one", ("mean_logprob",))
    before = leave_category_out(recs, c)
    flipped = [dict(r, correct=not r["correct"]) if r["category"] == "c0" else r for r in recs]
    after = leave_category_out(flipped, c)
    for r, a, b in zip(recs, before, after, strict=True):
        if r["category"] == "c0":
            assert a == b  # c0's own labels changed, its scores did not


def test_recalibration_keeps_direction_and_fits_known_probabilities():
    recs, _ = _known(4000, 3)
    plain = fit_candidate(recs, Candidate("a", ("mean_logprob",), l2=0.0))
    recal = fit_candidate(recs, Candidate("b", ("mean_logprob",), l2=0.0, recalibrate=True))
    assert isinstance(recal, LogisticMap) and recal.coef[0] > 0
    test, p_true = _known(4000, 4)
    p = np.array([recal(r["features"]) for r in test])
    assert np.abs(p - p_true).max() < 0.06  # no category shift: Platt changes little
    assert recal.coef[0] == pytest.approx(plain.coef[0], rel=0.15)


def test_isotonic_recalibration_keeps_the_knots_and_flattens_a_shifted_kind():
    """Categories that differ in difficulty the score does not see: held out, a category's
    answers are less separable than the map says; Platt on the held-out logits flattens the
    isotonic map's knots (same x, monotone, closer to the base rate)."""
    recs, _ = _known(3000, 8, cats=4, shift=1.5)
    c = Candidate("iso", ("mean_logprob",), kind="isotonic")
    plain = fit_candidate(recs, c)
    recal = fit_candidate(recs, Candidate("iso r", c.features, kind="isotonic", recalibrate=True))
    assert isinstance(recal, IsotonicMap) and recal.x == plain.x
    assert list(recal.p) == sorted(recal.p) and 0 < recal.p[0] and recal.p[-1] < 1
    assert recal.p[-1] - recal.p[0] < plain.p[-1] - plain.p[0]


def test_check_cap_is_fitted_without_the_held_out_category():
    def rec(cat: str, wrong: float, right: bool) -> dict:
        return {"features": {"wrong_arithmetic": wrong}, "correct": right, "category": cat}

    pool = [rec("a", 1.0, False)] * 8 + [rec("b", 1.0, True)] * 2 + [rec("b", 0.0, True)] * 5
    assert check_cap(pool) == pytest.approx((2 + 1) / (10 + 2))
    assert check_cap([rec("a", 0.0, True)]) is None
    out = capped([0.9, 0.9, 0.9], [pool[0], pool[8], pool[10]], pool)
    assert out[0] == pytest.approx(3 / 4)  # a's cap from b's two flagged answers, both right
    assert out[1] == pytest.approx(1 / 10)  # b's from a's eight, all wrong
    assert out[2] == 0.9  # not flagged: not capped


def _block(auroc: float, within: float, ece_: float) -> dict:
    return {"raw": {"n": 100, "auroc": auroc, "within_category_auroc": within, "ece": ece_,
                    "accuracy": 0.5, "top_half_accuracy": 0.6}}  # fmt: skip


def test_choose_prefers_fewer_features_then_lowest_ece():
    cands = [
        Candidate("big", ("a", "b", "c")),
        Candidate("big recal", ("a", "b", "c"), recalibrate=True),
        Candidate("small", ("a",)),
        Candidate("small iso", ("a",), kind="isotonic"),
        Candidate("small recal", ("a",), recalibrate=True),
        Candidate("other", ("b",)),
    ]
    results = {
        "big": _block(0.80, 0.78, 0.09),
        "big recal": _block(0.80, 0.78, 0.03),
        "small": _block(0.795, 0.78, 0.08),  # within 2 x TOLERANCE of the best ranking
        "small iso": _block(0.79, 0.775, 0.04),  # same score, ranks as well, calibrates best
        "small recal": _block(0.70, 0.70, 0.01),  # ranks worse: not a variant to pick
        "other": _block(0.60, 0.60, 0.01),
    }
    assert choose(results, cands, "raw").name == "small iso"
    # one score's map fitted on both formats is one more variant of it, not another score
    pooled = [*cands, Candidate("small iso pooled", ("a",), kind="isotonic", pooled=True)]
    results["small iso pooled"] = _block(0.797, 0.781, 0.11)
    assert choose(results, pooled, "raw").name == "small iso"
    del results["small iso pooled"]
    results["small"] = _block(0.70, 0.70, 0.08)
    results["small iso"] = _block(0.70, 0.70, 0.04)
    assert choose(results, cands, "raw").name == "big recal"  # the simple one is too far behind
    with pytest.raises(ValueError):
        choose(results, cands, "chat")


def test_raw_text_never_gets_a_score_that_hangs_on_where_the_text_was_stopped():
    """The whole generation's features see what follows a raw answer (dev is always stopped at
    the line break, a user's request need not be): never chosen for raw, even when best; a
    pooled isotonic map of one score counts as one feature."""
    cands = [
        Candidate("whole", ("whole_mean_logprob",)),
        Candidate("answer+whole", ("answer_mean_logprob", "whole_mean_logprob")),
        Candidate("answer", ("answer_mean_logprob",), kind="isotonic", pooled=True),
        Candidate(
            "answer+margin", ("answer_mean_logprob", "first_margin", FORMAT_FEATURE), pooled=True
        ),  # fmt: skip
    ]
    results = {
        "whole": _block(0.90, 0.90, 0.01),
        "answer+whole": _block(0.90, 0.90, 0.01),
        "answer": _block(0.75, 0.75, 0.05),
        "answer+margin": _block(0.752, 0.752, 0.04),
    }
    assert choose(results, cands, "raw").name == "answer"  # fewest features among near-equal
    chat = {n: {"chat": b["raw"]} for n, b in results.items()}
    assert choose(chat, cands, "chat").name == "whole"  # a chat answer ends at its own end


def test_bootstrap_intervals_bracket_the_figures():
    recs, p = _known(400, 6)
    b = bootstrap(list(p), recs, n_boot=200)
    y = [r["correct"] for r in recs]
    big, p_big = _known(50000, 7)
    truth = auroc(list(p_big), [r["correct"] for r in big])  # the population's, nearly
    assert b["auroc"][0] < auroc(list(p), y) < b["auroc"][1]
    assert b["auroc"][0] < truth < b["auroc"][1] and b["auroc"][1] - b["auroc"][0] < 0.15
    assert 0 <= b["ece"][0] < ece(p, y) < b["ece"][1] < 0.15
    assert b["gain"][0] > 0  # the confident half is surer than all, beyond the noise


def test_select_command_writes_a_usable_map(tmp_path: Path, monkeypatch):
    from mlx_entropix.eval import confidence_select
    from mlx_entropix.eval.confidence_cli import main

    few = [c for c in confidence_select.candidates()
           if c.features in (("min_logprob",), ("mean_logprob",), LOGIT_FEATURES)]  # fmt: skip
    monkeypatch.setattr(confidence_select, "candidates", lambda: few)  # a quicker search

    rng = np.random.default_rng(7)
    names = (*LOGIT_FEATURES, *CONTEXT_FEATURES, *ATTENTION_FEATURES)
    records = []
    for fmt in ("chat", "raw"):
        for k in range(4):
            for _ in range(60):
                f = {n: float(rng.normal()) for n in names}
                p = 1 / (1 + np.exp(-(2 * f["min_logprob"] + 0.3 * k)))
                records.append({"mode": "greedy", "format": fmt, "category": f"{fmt}{k}",
                                "features": f, "correct": bool(rng.random() < p)})  # fmt: skip
    src = tmp_path / "dev.json"
    src.write_text(json.dumps({"run": {"model": "Tiny model", "csv": "x"}, "records": records}))
    out, report = tmp_path / "map.json", tmp_path / "r.md"
    # a map fitted elsewhere on sampled rows' agreement (confidence_sc.py) outlives the rewrite
    shipped = json.loads((CONFIDENCE_DIR / "smollm2-135m-instruct.json").read_text())
    agreement = LogisticMap(("whole_mean_logprob", "sc_agreement"), (-0.5, 0.3), (0.2, 0.3),
                            (0.6, 0.9), 0.1)  # fmt: skip
    shipped["maps"]["chat+agreement"] = agreement.to_dict()
    out.write_text(json.dumps(shipped))
    args = [str(src), "--test", str(src), "--select", "--out", str(out)]
    assert main([*args, "--report", str(report), "--boot", "50"]) == 0
    model = ConfidenceModel.from_file(out)
    assert set(model.meta["chosen"]) == {"chat", "raw"}
    assert set(model.maps) == {"chat", "raw", "chat+agreement"}
    assert model.maps["chat+agreement"].to_dict() == shipped["maps"]["chat+agreement"]
    text = report.read_text()
    assert "Chosen (dev, leave one category out)" in text and "attention test" in text
    # the signal is min_logprob: a map that uses it ranks the answers
    lo = model({**dict.fromkeys(names, 0.0), "min_logprob": -2.0}, "raw")
    hi = model({**dict.fromkeys(names, 0.0), "min_logprob": 2.0}, "raw")
    assert lo is not None and hi is not None and hi > lo


@functools.lru_cache(maxsize=1)
def _calib_module():
    spec = importlib.util.spec_from_file_location(
        "calib", ROOT / "benchmarks" / "confidence_calib_dev.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _questions(prompt: str) -> set[str]:
    """Sums (word problems' too), differences, comparisons and countries, read from the text
    (a doubling is a sum of a number with itself; a capital named is its country)."""
    capitals = {c.split("|")[0]: k for k, c in _calib_module().ms.CAPITALS.items()}
    pairs = lambda rx, tag: {f"{tag}:{sorted(map(int, m))}" for m in re.findall(rx, prompt)}  # noqa: E731
    found = pairs(r"(\d+) \+ (\d+)(?: =|\?)", "add") | pairs(
        r"has (\d+) [a-z ]+ and gets (\d+)", "add"
    )
    found |= {f"add:{[int(a), int(a)]}" for a in re.findall(r"double (\d+)\?", prompt)}
    found |= pairs(r"(\d+) x (\d+)(?: =|\?)", "mul") | pairs(r"max\((\d+), (\d+)\) =", "max")
    found |= {f"{w}:{a}" for w, a in re.findall(r"(after|half of) (\d+)\?", prompt)}
    found |= {f"sub:{a},{b}" for a, b in re.findall(r"(\d+) - (\d+)(?: =|\?)", prompt)}
    found |= {f"sub:{a},{b}" for a, b in re.findall(r"has (\d+) [a-z ]+ and gives away (\d+)",
                                                     prompt)}  # fmt: skip
    found |= pairs(r"(?:larger|smaller), (\d+) or (\d+)\?", "pair")
    found |= pairs(r"Is (\d+) larger than (\d+)\?", "pair")
    found |= {f"country:{c}" for c in re.findall(r"capital of ([A-Z][A-Za-z ]+)\?", prompt)}
    found |= {
        f"country:{capitals[c]}" for c in re.findall(r"the capital ([A-Z][A-Za-z ]+)\?", prompt)
    }
    return found


def test_calibration_set_is_reproducible_and_shares_no_question_with_test():
    mod = _calib_module()
    built = mod.build()
    assert built == mod.build()
    test = [r["prompt"] for r in csv.DictReader((ROOT / "data/eval/core.csv").open(newline=""))]
    test_q = set().union(*map(_questions, test))
    assert any(q.startswith("add:") for q in test_q) and any(
        q.startswith("country:") for q in test_q
    )
    for fmt, rows in built.items():
        on_disk = list(csv.DictReader(mod.OUT[fmt].open(newline="", encoding="utf-8")))
        assert on_disk == rows, f"{mod.OUT[fmt]} is stale: run benchmarks/confidence_calib_dev.py"
        core_cats = {"add_1digit", "mul_1digit", "larger_2digit", "word_problem", "capital",
                     "capital_choice"}  # fmt: skip
        assert not {r["category"] for r in rows} & core_cats  # new kinds of question only
        for r in rows:
            assert r["format"] == fmt.lstrip("2")
            if "decimal" not in r["category"]:
                assert _questions(r["prompt"]), r["prompt"]
            assert not _questions(r["prompt"]) & test_q, r["prompt"]
