"""Fork mode's confidence: the branches' agreement, a fork map over the shipped confidence,
and the fit's reading of agreement (``benchmarks/confidence_fork.py``). No model."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from mlx_entropix.engine.confidence import FORMAT_FEATURE, ConfidenceModel, LogisticMap

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import numpy as np
import pytest
from confidence_fork import (  # noqa: E402  (a benchmark script, not a package module)
    BASE_FEATURE,
    branch_agreement,
    compare,
    fit_fork_maps,
    fork_agreement,
    fork_records,
    select,
    with_fork_map,
)

ONE = LogisticMap(("mean_logprob",), (-1.0,), (1.0,), (2.0,), 0.0)
FORK = LogisticMap((BASE_FEATURE, "fork_agree_share"), (0.0, 0.5), (1.0, 0.25), (1.0, 1.0), 0.0)
MODEL = ConfidenceModel({"chat": ONE, "raw": ONE}, {}, {"raw": 0.05})


def test_branch_agreement_shares():
    got = branch_agreement(["4", "4", "5"], [0.6, 0.2, 0.2], kept=0)
    assert got == pytest.approx({"fork_agree_share": 2 / 3, "fork_agree_score": 0.8})
    # a branch without an answer disagrees; the kept one without an answer: no feature
    assert branch_agreement(["4", None, None], [0.5, 0.5, 0.0], 0)["fork_agree_share"] == 1 / 3
    assert branch_agreement([None, "4"], [0.5, 0.5], 0) == dict.fromkeys(
        ("fork_agree_share", "fork_agree_score")
    )
    # a score that is not a share (negative log-probabilities): only the share of branches
    neg = branch_agreement(["4", "4"], [-0.1, -2.0], 1)
    assert neg == {"fork_agree_share": 1.0, "fork_agree_score": None}


def _fork(answers: list[str | None], trigger: str = "first", kind: str | None = "numeric") -> dict:
    """A ForkEvent's fields (the first branch kept)."""
    branches = [{"answer": a, "score": 0.5, "kept": j == 0} for j, a in enumerate(answers)]
    return {"trigger": trigger, "answer_kind": kind, "branches": branches, "kept": 0}


def test_fork_agreement_only_for_a_first_token_fork_with_a_short_answer_reader():
    assert fork_agreement(None) is None
    assert fork_agreement(_fork(["4", "4", "4"]))["fork_agree_share"] == 1.0
    assert fork_agreement(_fork(["B", "B", "C"], kind="choice"))["fork_agree_share"] == 2 / 3
    assert fork_agreement(_fork(["4", "4", "4"], trigger="exploring")) is None
    assert fork_agreement(_fork(["4", "4", "4"], kind=None)) is None
    assert fork_agreement(_fork(["paris", "paris"], kind="contains")) is None  # whole text


def test_fork_map_raises_agreeing_answers_and_keeps_the_cap():
    maps = {"raw": FORK, "chat": FORK}
    feats = {"mean_logprob": -1.0, "wrong_arithmetic": 0.0}
    base = MODEL(feats)
    assert base == pytest.approx(0.5)
    assert with_fork_map(MODEL, maps, feats, "chat") == base  # no agreement: the shipped one
    agree = with_fork_map(MODEL, maps, {**feats, "fork_agree_share": 1.0}, "chat")
    split = with_fork_map(MODEL, maps, {**feats, "fork_agree_share": 1 / 3}, "chat")
    assert agree > base > split
    # the map sees the logit of the base confidence: sigmoid(0 + 2) at share 1
    assert agree == pytest.approx(1 / (1 + math.exp(-2.0)))
    # an answer whose own arithmetic fails stays capped whatever its branches say
    wrong = {**feats, "fork_agree_share": 1.0, "wrong_arithmetic": 1.0}
    assert with_fork_map(MODEL, maps, wrong, "raw") == 0.05


def _fork_runs(n: int, seed: int) -> dict:
    """Fork answers whose rightness hangs on the base score and on agreement: P(right) =
    sigmoid(s + 3 (share - 0.6)), across four kinds of question and both formats."""
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        s = float(rng.normal(-1, 1))
        n_same = int(rng.integers(1, 4))
        share = n_same / 3
        y = bool(rng.random() < 1 / (1 + math.exp(-(s + 1 + 3 * (share - 0.6)))))
        answers = ["4"] * n_same + ["5", "6"][: 3 - n_same]
        recs.append({
            "item": i, "mode": "fork", "category": f"c{i % 4}", "format": ["raw", "chat"][i % 2],
            "correct": y, "text": " 4", "features": {"mean_logprob": s},
            "branches": [{"answer": a, "score": 0.5, "kept": j == 0}
                         for j, a in enumerate(answers)],
        })  # fmt: skip
    return {"run": {"csv": "none"}, "records": recs}


def test_the_fit_reads_agreement_as_raising_confidence():
    base = ConfidenceModel({"chat": ONE, "raw": ONE}, {})
    runs = _fork_runs(800, 0)
    kinds = {r["item"]: "numeric" for r in runs["records"]}
    assert (
        fork_records(runs, base, dict.fromkeys(kinds, "contains"))[0]["features"][
            "fork_agree_share"
        ]
        is None
    )  # a whole-text reader: no agreement, the shipped confidence
    dev = fork_records(runs, base, kinds)
    assert {r["features"]["fork_agree_share"] for r in dev} == {1 / 3, 2 / 3, 1.0}
    chosen, results, preds = select(dev, base)
    assert all("share" in c.name for c in chosen.values())  # agreement chosen in both formats
    maps = fit_fork_maps(dev, chosen)
    for fmt, m in maps.items():
        at = {BASE_FEATURE: 0.0, FORMAT_FEATURE: float(fmt == "raw")}
        lo = m({**at, "fork_agree_share": 1 / 3, "fork_agree_score": 1 / 3})
        hi = m({**at, "fork_agree_share": 1.0, "fork_agree_score": 1.0})
        assert hi > lo
    new = [preds[chosen[r["format"]].name][i] for i, r in enumerate(dev)]
    old = [r["confidence"] for r in dev]
    diff = compare(new, old, dev, 200)["all"]["auroc_diff"]
    assert diff["diff"] > 0 and diff["ci95"][0] > 0  # agreement adds what the base misses
