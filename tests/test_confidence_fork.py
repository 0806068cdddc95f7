"""Fork mode's confidence: the branches' agreement, the fork map in the model and the done
event, and the fit's reading of agreement. No model."""

from __future__ import annotations

import math

from mlx_entropix.engine.confidence import (
    BASE_FEATURE,
    FORMAT_FEATURE,
    ConfidenceModel,
    LogisticMap,
    branch_agreement,
    fork_agreement,
    logit,
    shipped_model,
)
from mlx_entropix.engine.stream import RowStream
from mlx_entropix.eval.confidence_fork import compare, fit_fork_maps, fork_records, select
from mlx_entropix.events import ForkBranch, ForkEvent, Metrics, TopLogprob

import numpy as np
import pytest

ONE = LogisticMap(("mean_logprob",), (-1.0,), (1.0,), (2.0,), 0.0)
FORK = LogisticMap((BASE_FEATURE, "fork_agree_share"), (0.0, 0.5), (1.0, 0.25), (1.0, 1.0), 0.0)
MODEL = ConfidenceModel({"chat": ONE, "raw": ONE}, {}, {"raw": 0.05}, {"raw": FORK, "chat": FORK})


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


def _fork(answers: list[str | None], kept: int = 0, trigger: str = "first",
          kind: str | None = "numeric") -> ForkEvent:  # fmt: skip
    branches = [
        ForkBranch(
            token=TopLogprob(id=1, text="x", logprob=-0.1),
            text=f" {a}",
            tokens=2,
            score=0.5,
            answer=a,
            kept=j == kept,
        )  # fmt: skip
        for j, a in enumerate(answers)
    ]
    return ForkEvent(mode="fork", index=0, trigger=trigger, metrics=Metrics.from_values([0.0] * 6),
                     score="margin", branches=branches, kept=kept, tokens_computed=6,
                     answer_kind=kind)  # fmt: skip


def test_fork_agreement_only_for_a_first_token_fork_with_a_reader():
    assert fork_agreement(None) is None
    assert fork_agreement(_fork(["4", "4", "4"]))["fork_agree_share"] == 1.0
    assert fork_agreement(_fork(["4", "4", "5"]).model_dump())["fork_agree_share"] == 2 / 3
    assert fork_agreement(_fork(["4", "4", "4"], trigger="exploring")) is None
    assert fork_agreement(_fork(["4", "4", "4"], kind=None)) is None


def test_fork_map_raises_agreeing_answers_and_keeps_the_cap_and_round_trips(tmp_path):
    feats = {"mean_logprob": -1.0, "wrong_arithmetic": 0.0}
    base = MODEL(feats)
    assert base == pytest.approx(0.5)  # no fork features: the per-format map's confidence
    agree = MODEL({**feats, "fork_agree_share": 1.0})
    split = MODEL({**feats, "fork_agree_share": 1 / 3})
    assert agree > base > split
    # the map sees the logit of the base confidence: 1 / (1 + exp(-(0 + 2))) at share 1
    assert agree == pytest.approx(1 / (1 + math.exp(-(logit(0.5) + 2.0))))
    # an answer whose own arithmetic fails stays capped whatever its branches say
    assert MODEL({**feats, "fork_agree_share": 1.0, "wrong_arithmetic": 1.0}, "raw") == 0.05
    path = tmp_path / "m.json"
    path.write_text(MODEL.to_json())
    again = ConfidenceModel.from_file(path)
    assert again.fork == MODEL.fork
    assert again({**feats, "fork_agree_share": 1.0}) == pytest.approx(agree)


class _Tok:
    eos_token_ids = {0}
    PIECES = ["<eos>", " 4", "\n"]

    def detokenizer(self):
        pieces = self.PIECES

        class D:
            def add_token(self, i: int) -> str:
                return pieces[i]

        return D()

    def id_to_text(self, i: int) -> str:
        return self.PIECES[i]


def _done(model: ConfidenceModel, fork: ForkEvent | None) -> float | None:
    """A raw answer " 4" (p 0.6, runner-up 0.3) after a fork event, or none: its confidence."""
    s = RowStream(_Tok(), "fork", (), 0, 2, 0.0, model, "raw")
    if fork is not None:
        s.add_fork(fork)
    values = [1.0] + [0.0] * 7 + [math.log(0.6)] + [0.5] * 6 + [1.0, 2.0]
    s.push(values + [math.log(0.6), math.log(0.3)])
    s.close()
    return s.done(3, 0.0, 0).confidence


def test_done_event_of_a_fork_reads_its_branches_agreement():
    alone = _done(MODEL, None)
    agree, split = _done(MODEL, _fork(["4", "4", "4"])), _done(MODEL, _fork(["4", "5", "6"]))
    assert agree is not None and split is not None and alone is not None
    assert agree > alone > split


def test_shipped_fork_map_raises_agreement_over_disagreement():
    model = shipped_model("SmolLM2-135M-Instruct")
    if model is None or not model.fork:
        pytest.skip("no fork map shipped")
    agree, split = _done(model, _fork(["4", "4", "4"])), _done(model, _fork(["4", "5", "6"]))
    assert agree is not None and split is not None and agree > split
    assert _done(model, _fork(["4", "4", "4"], kind=None)) == _done(model, None)


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
