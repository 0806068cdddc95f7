"""Answer confidence: the span, its features, the fitted map, and the measures of its quality
(AUROC, ECE, risk-coverage) against hand-computed values. No model."""

from __future__ import annotations

import json
import math

from mlx_entropix.engine.confidence import (
    ConfidenceModel,
    LogisticMap,
    TokenSignal,
    abstains,
    answer_span,
    boundary_span,
    features,
    score,
    shipped_model,
    span_features,
    span_tokens,
    wrong_arithmetic,
)
from mlx_entropix.eval.confidence_fit import fit_model, out_of_fold
from mlx_entropix.eval.confidence_stats import (
    auroc,
    ece,
    ece_floor,
    paired_bootstrap,
    reliability,
    risk_coverage,
    summarize_confidence,
    top_half_accuracy,
)

import numpy as np
import pytest

SURE = math.log(0.95), (math.log(0.95), math.log(0.03))
UNSURE = math.log(0.2), (math.log(0.25), math.log(0.2))
METRICS = (0.3, 1.0, 2.0, 0.5, 0.02, 2.1)


def stream(pieces: list[tuple[str, tuple[float, tuple[float, float]]]]) -> tuple[str, list]:
    """A constructed event stream: (token text, (logprob, top2)) -> text and signals."""
    text, signals = "", []
    for piece, (lp, top2) in pieces:
        text += piece
        signals.append(TokenSignal(len(text), lp, top2, METRICS))
    return text, signals


ONE = LogisticMap(("mean_logprob",), (-1.0,), (1.0,), (2.0,), 0.0)
MODEL = ConfidenceModel({"chat": ONE, "raw": ONE}, {})


# --------------------------------------------------------------------------- the span


@pytest.mark.parametrize(
    ("text", "kind", "want"),
    [
        (" 12\nQ: next", "numeric", "12"),
        ("3 + 4 = 7 and so on", "numeric", "7"),
        ("The answer is 42. Then 7.", "numeric", "42"),
        ("It costs 3.5 dollars", "numeric", "3.5"),
        ("(B) Ankara", "choice", "B"),
        ("The answer is B.", "choice", "B"),
        ("Well, no, I think", "yesno", "no"),
        (" Paris.\nThe capital of", "contains", "Paris"),
        ("Paris is the capital. It is", None, "Paris is the capital"),
        ("It is 3.5 metres long. Yes", None, "It is 3.5 metres long"),
        ("  first line\nsecond", None, "first line"),
        (" 3 + 1 = 4\nQ: Anna has", None, "4"),  # no kind: an equation's right-hand side
        ("x = y, so\n2 = 2", None, "x = y, so"),  # no number after its "=": the line
    ],
)
def test_answer_span(text, kind, want):
    span = answer_span(text, kind)
    assert span is not None and text[span[0] : span[1]] == want


def test_choice_span_from_option_text():
    text = "The capital of Turkey is Ankara."
    span = answer_span(text, "choice", {"A": "Istanbul", "B": "Ankara"})
    assert span is not None and text[span[0] : span[1]] == "Ankara"


def test_the_span_is_the_place_the_grader_reads_not_an_earlier_copy():
    # The grader reads the letter after the marker, so the span is that "A", not the first one;
    # an option text only as part of a longer word ("4" in "34") names no option.
    text = "A) Tokyo\n\nThe answer is A."
    assert answer_span(text, "choice") == (text.rindex("A"), text.rindex("A") + 1)
    assert answer_span("The answer is 34.", "choice", {"A": "4", "B": "7"}) == (0, 16)


def test_no_number_falls_back_to_the_boundary_and_empty_text_has_no_span():
    assert answer_span("I do not know. Sorry", "numeric") == (0, 13)
    assert boundary_span("   \n ") is None
    assert answer_span("", None) is None


def test_span_tokens_overlap_and_skip_empty_pieces():
    text, sig = stream([(" 1", SURE), ("2", SURE), ("", UNSURE), ("\n", UNSURE), ("Q", UNSURE)])
    assert text == " 12\nQ"
    got = span_tokens(sig, (1, 3))
    assert [s.end for s in got] == [2, 3]


# --------------------------------------------------------------------------- features, map


def test_confidence_ignores_an_unconfident_continuation():
    """A confident answer followed by an unconfident continuation gets the answer's
    confidence: the same as the answer alone."""
    answer = [(" Paris", SURE), (".", SURE)]
    rambling = [(" I", UNSURE), (" think", UNSURE), (" maybe", UNSURE), (" not", UNSURE)]
    alone = score(*stream(answer), MODEL, "chat")
    long = score(*stream(answer + rambling), MODEL, "chat")
    whole = span_features(stream(answer + rambling)[1])
    assert long.confidence == alone.confidence > 0.85
    assert long.features["mean_logprob"] == pytest.approx(math.log(0.95))
    assert whole["mean_logprob"] < math.log(0.5)  # the whole text would have looked unsure
    assert long.span == (1, 6)


def test_answer_features_take_the_ending_token_and_ignore_a_continuation():
    """A raw answer stopped at its line break (the stop string's token adds no text) and the
    same answer running on past it get the same answer features: the span's tokens and the
    token that ends the answer, nothing after; the whole generation's mean differs."""
    end = (math.log(0.5), (math.log(0.5), math.log(0.3)))
    answer = [(" ", SURE), ("8", SURE), ("5", SURE)]
    stopped = stream([*answer, ("", end)])
    ran_on = stream([*answer, ("\n", end), ("1", UNSURE), ("3", UNSURE), (" x", UNSURE)])
    a = features(stopped[0], stopped[1], answer_span(stopped[0], "numeric"))
    b = features(ran_on[0], ran_on[1], answer_span(ran_on[0], None))
    want = (2 * math.log(0.95) + math.log(0.5)) / 3
    for f in (a, b):
        assert f["answer_mean_logprob"] == pytest.approx(want)
        assert f["answer_sum_logprob"] == pytest.approx(3 * want)
        assert f["mean_logprob"] == pytest.approx(math.log(0.95))  # the span alone
        assert f["through_mean_logprob"] == pytest.approx((3 * math.log(0.95) + math.log(0.5)) / 4)
    assert b["whole_mean_logprob"] < a["whole_mean_logprob"] - 0.3
    # no ending token (the text ended with the span): the span's tokens alone
    last = stream(answer)
    f = features(last[0], last[1], (1, 3))
    assert f["answer_mean_logprob"] == pytest.approx(math.log(0.95))
    assert f["through_mean_logprob"] == pytest.approx(math.log(0.95))


def test_features_margin_and_missing_values():
    _, sig = stream([(" 7", SURE), ("1", UNSURE)])
    f = span_features(sig)
    assert f["first_margin"] == pytest.approx(0.92)
    assert f["min_margin"] == pytest.approx(0.05)
    assert f["min_logprob"] == pytest.approx(math.log(0.2))
    assert f["log_tokens"] == pytest.approx(math.log(2))
    blind = [TokenSignal(1, -0.1, None, (0.1, 0.2, None, None, None, None))]
    f = span_features(blind)
    assert f["first_margin"] is None and f["attn_entropy"] is None
    assert MODEL(span_features([])) is None  # nothing to score: no confidence


def test_map_round_trip_and_format_fallback(tmp_path):
    raw = LogisticMap(("mean_logprob",), (0.0,), (1.0,), (1.0,), -1.0)
    model = ConfidenceModel({"chat": ONE, "raw": raw}, {"fitted_on": "x"})
    path = tmp_path / "m.json"
    path.write_text(model.to_json())
    back = ConfidenceModel.from_file(path)
    assert back == model
    f = {"mean_logprob": 0.0}
    assert back(f, "raw") == pytest.approx(1 / (1 + math.e))
    assert back(f, "other") == back(f, "chat") == pytest.approx(1 / (1 + math.exp(-2)))


def test_abstains():
    assert abstains(0.3, 0.5) and not abstains(0.6, 0.5)
    assert not abstains(None, 0.5) and not abstains(0.1, None)


def test_shipped_map_for_the_embedded_model():
    model = shipped_model("SmolLM2-135M-Instruct")
    assert model is not None and {"chat", "raw"} <= set(model.maps)
    assert shipped_model("no-such-model") is None


# --------------------------------------------------------------------------- calibration


def _records(n: int, seed: int) -> tuple[list[dict], np.ndarray]:
    """Scores with known probabilities: P(right | s) = sigmoid(-1 + 2 s)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 1.2, n)
    p = 1 / (1 + np.exp(-(-1 + 2 * s)))
    y = rng.random(n) < p
    recs = [
        {"features": {"mean_logprob": float(v)}, "correct": bool(c), "format": "raw"}
        for v, c in zip(s, y, strict=True)
    ]
    return recs, p


def test_calibration_recovers_known_probabilities_and_is_monotone():
    recs, _ = _records(4000, 0)
    model = fit_model(recs, ["mean_logprob"], l2=0.0)
    test, p_true = _records(4000, 1)
    p_fit = np.array([model(r["features"], "raw") for r in test])
    assert np.abs(p_fit - p_true).max() < 0.05
    y = [r["correct"] for r in test]
    assert ece(p_fit, y) < 0.03
    grid = [model({"mean_logprob": v}, "raw") for v in np.linspace(-4, 4, 50)]
    assert all(b > a for a, b in zip(grid, grid[1:], strict=False))


def test_out_of_fold_scores_every_record():
    recs, _ = _records(200, 2)
    conf = out_of_fold(recs, ["mean_logprob"], folds=4)
    assert all(c is not None for c in conf)
    assert auroc(conf, [r["correct"] for r in recs]) > 0.7


# --------------------------------------------------------------------------- measures


def test_auroc_hand_computed():
    # right: 0.9, 0.4; wrong: 0.5, 0.1. Pairs (right > wrong): 0.9>0.5, 0.9>0.1, 0.4>0.1,
    # 0.4<0.5: 3 of 4.
    assert auroc([0.9, 0.4, 0.5, 0.1], [True, True, False, False]) == pytest.approx(0.75)
    # A tie counts one half: right 0.5 vs wrong 0.5 -> 0.5; right 0.5 vs wrong 0.2 -> 1.
    assert auroc([0.5, 0.5, 0.2], [True, False, False]) == pytest.approx(0.75)
    assert auroc([0.1, 0.2], [True, True]) is None


def test_ece_and_reliability_hand_computed():
    conf = [0.15, 0.15, 0.85, 0.85, 1.0]
    right = [False, True, True, True, False]
    # bin 1: conf 0.15, acc 0.5 (2 answers); bin 8: conf 0.85, acc 1 (2); bin 9: conf 1, acc 0.
    # ECE = (2*0.35 + 2*0.15 + 1*1.0) / 5 = 0.4
    assert ece(conf, right) == pytest.approx(0.4)
    rows = reliability(conf, right)
    assert [(r["lo"], r["count"], r["accuracy"]) for r in rows] == [
        (0.1, 2, 0.5),
        (0.8, 2, 1.0),
        (0.9, 1, 0.0),
    ]


def test_risk_coverage_and_top_half_hand_computed():
    scores = [0.2, 0.9, 0.6, 0.4]
    right = [False, True, False, True]
    # most confident first: 0.9 (right), 0.6 (wrong), 0.4 (right), 0.2 (wrong)
    assert risk_coverage(scores, right) == [(0.25, 1.0), (0.5, 0.5), (0.75, 2 / 3), (1.0, 0.5)]
    assert top_half_accuracy(scores, right) == 0.5
    assert top_half_accuracy([0.9, 0.1, 0.5], [True, False, True]) == 1.0  # ceil(3/2) = 2


def test_paired_bootstrap_difference():
    y = [True, False] * 20
    good = [0.8 if c else 0.2 for c in y]
    noise = list(np.random.default_rng(0).random(40))
    res = paired_bootstrap(auroc, good, noise, y, n_boot=300)
    assert res["diff"] > 0.3 and res["ci95"][0] > 0
    same = paired_bootstrap(auroc, good, good, y, n_boot=50)
    assert same["diff"] == 0 and same["ci95"] == [0.0, 0.0]


def test_summarize_confidence_within_category():
    recs = [
        {"confidence": c, "correct": y, "category": cat, "format": "raw"}
        for c, y, cat in [(0.9, True, "a"), (0.1, False, "a"), (0.4, True, "b"), (0.6, False, "b")]
    ]
    s = summarize_confidence(recs)
    assert s["per_category"]["a"]["auroc"] == 1.0 and s["per_category"]["b"]["auroc"] == 0.0
    assert s["within_category_auroc"] == 0.5
    assert s["auroc"] == 0.75
    assert summarize_confidence([{"confidence": None, "correct": True}]) is None


def test_rescored_result_reports_and_plots(tmp_path):
    from mlx_entropix.eval.confidence_fit import rescored
    from mlx_entropix.eval.report import confidence_markdown, confidence_plot

    recs, _ = _records(60, 3)
    for i, r in enumerate(recs):
        fmt = "chat" if i % 2 else "raw"
        r.update(item=i, mode="greedy", seed_index=0, category=f"{fmt}-{i % 3}", tokens=2,
                 seconds=0.1, finish_reason="stop", state_counts={}, format=fmt)  # fmt: skip
    result = {"run": {"csv": "x.csv", "model": "m", "modes": ["greedy"]}, "records": recs}
    model = fit_model(recs, ["mean_logprob"], meta={"fitted_on": "here"})
    out = rescored(result, model)
    c = out["summary"]["greedy"]["confidence"]
    assert c["n"] == 60 and set(c["per_format"]) == {"chat", "raw"}
    assert out["run"]["confidence_map"] == {"fitted_on": "here"}
    table = confidence_markdown(out)
    assert "| greedy | all | 60 |" in table and "| greedy | chat | 30 |" in table
    assert confidence_plot(out, tmp_path / "c.png") and (tmp_path / "c.png").stat().st_size > 0
    assert not confidence_plot({"summary": {"greedy": {}}, "run": {}}, tmp_path / "none.png")


def test_cli_summary_line_reads_the_confidence():
    from mlx_entropix.cli.terminal import Style, summary
    from mlx_entropix.events import DoneEvent

    base = {"mode": "greedy", "text": " Paris. It is", "finish_reason": "length",
            "prompt_tokens": 3, "generated_tokens": 4, "ttft_s": 0.1, "total_s": 0.2,
            "prefill_tok_s": 10.0, "decode_tok_s": 5.0, "state_counts": {},
            "action_counts": {}}  # fmt: skip
    done = DoneEvent(**base, confidence=0.83, answer_span=[1, 6])
    text = summary(done, Style())
    assert "answer:  'Paris' · confidence 0.83 (likely right)" in text
    assert "ABSTAINED" not in text
    low = summary(done.model_copy(update={"confidence": 0.2, "abstained": True}), Style())
    assert "(likely wrong) · ABSTAINED" in low
    assert "confidence" not in summary(DoneEvent(**base), Style())
    # cut, not rounded: below --min-confidence 1 it never reads 1.00, nor "unsure" 0.70
    near = summary(done.model_copy(update={"confidence": 0.998178, "abstained": True}), Style())
    assert "confidence 0.99 (likely right) · ABSTAINED" in near
    for value, shown in ((0.6999, "0.69 (unsure)"), (0.29, "0.29 (likely wrong)")):
        assert f"confidence {shown}" in summary(done.model_copy(update={"confidence": value}),
                                                Style())  # fmt: skip


@pytest.mark.parametrize(
    "text, want",
    [
        (" 7 + 7 = 12", 1.0),
        (" 7 + 7 = 14", 0.0),
        ("3 * 4 = 13 so the answer is 13", 1.0),
        ("6 x 4 = 24", 0.0),
        ("9 - 10 = -1", 0.0),
        ("10 / 4 = 2.5", 0.0),
        ("10 / 3 = 3.33", 0.0),  # rounded where it is written: it holds
        ("2 / 3 = 0.66", 0.0),  # or cut there
        ("2.5 x 1.5 = 3.8", 0.0),
        ("10 / 3 = 3", 1.0),  # no decimals: exact, as "7 + 7 = 12"
        ("10 / 3 = 3.5", 1.0),
        ("7 + 7 = 14.2", 1.0),
        ("5 / 0 = 3", 1.0),
        ("1,000 + 2 = 1,002", 0.0),  # not "000 + 2 = 1": a thousands separator, no equation
        ("Max - 8 = 10 - 8 = 1", 1.0),  # the chain's last step fails
        ("3/4 = 6/8 and 1/2 + 1/4 = 3/4", 0.0),  # fractions: not "4 = 6" nor "2 + 1 = 3"
        ("The answer is 4.", 0.0),
        ("", 0.0),
    ],
)
def test_wrong_arithmetic(text, want):
    assert wrong_arithmetic(text) == want


def test_wrong_arithmetic_reads_only_up_to_the_answer_and_caps_the_confidence(tmp_path):
    """A false equation before the answer caps its confidence (per format, as shipped); one in
    a continuation after the answer does not count."""
    ok = stream([(" 7 + 7 = 14", SURE), ("\n", SURE), ("3 + 3 = 7", UNSURE)])
    bad = stream([(" 7 + 7 = 12", SURE), ("\n", SURE)])
    f_ok = features(ok[0], ok[1], answer_span(ok[0], None))
    f_bad = features(bad[0], bad[1], answer_span(bad[0], None))
    assert f_ok["wrong_arithmetic"] == 0.0 and f_bad["wrong_arithmetic"] == 1.0
    model = ConfidenceModel({"chat": ONE, "raw": ONE}, {}, {"raw": 0.05})
    assert model(f_bad, "raw") == 0.05 and model(f_ok, "raw") == model(f_ok, "chat") > 0.5
    assert model(f_bad, "chat") == model(f_ok, "chat")  # no cap for chat
    assert model({**f_bad, "mean_logprob": None}, "raw") is None
    path = tmp_path / "m.json"
    path.write_text(model.to_json())
    assert ConfidenceModel.from_file(path) == model
    old = json.loads(model.to_json())
    old["wrong_arithmetic"] = old.pop("failed_check")  # its key when the arithmetic was alone
    path.write_text(json.dumps(old))
    assert ConfidenceModel.from_file(path) == model
    del old["wrong_arithmetic"]  # a map written before the cap: no cap
    path.write_text(json.dumps(old))
    assert ConfidenceModel.from_file(path).failed_check == {}


def test_ece_floor_is_the_small_sample_bias_of_a_calibrated_confidence():
    assert ece_floor([1.0] * 40) == 0.0 and ece_floor([0.0] * 40) == 0.0 and ece_floor([]) == 0.0
    spread = list(np.linspace(0.05, 0.95, 40))
    few, many = ece_floor(spread), ece_floor(spread * 25)
    assert 0.08 < few < 0.2 and many < few / 3  # shrinks like 1 / sqrt(answers)
    # one bin of 400 answers at 0.5: the mean |accuracy - 0.5| of a binomial, ~0.02
    assert ece_floor([0.5] * 400) == pytest.approx(
        math.sqrt(0.25 / 400) * math.sqrt(2 / math.pi), rel=0.15
    )
