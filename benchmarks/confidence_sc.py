"""Sampled agreement as a confidence feature (``engine/agreement.py``): the share of k rows
sampled in normal mode whose answer is the greedy answer's, read with the engine's own reader
(``agreement.answer_of``: the span reader without an answer kind, as a request has), next to
the raw map's score; chosen with ``confidence_select``'s leave-one-category-out rule among the
shipped raw map and maps that take the agreement. Raw few-shot items only (dev's 13 kinds).

The rows come from an evaluation in mode sc of a set (its records keep every row's text), the
greedy answer and its features from that set's greedy result (``--signals``):

    uv run benchmarks/eval.py benchmarks/results/confidence_calib_raw.csv --modes sc \\
        --sc-k 4 --seeds 1 --max-tokens 8 --out sc_calib_raw   # likewise calib2_raw; dev.csv's
        # raw items: data/eval/dev.csv --limit 160 --max-tokens 16 (word problems run longer)
    uv run benchmarks/confidence_sc.py dev benchmarks/results/confidence/calib_raw.json:\\
        sc_calib_raw.json ... [--write]  # --write: the chosen map into the shipped config
    uv run benchmarks/confidence_sc.py test benchmarks/results/confidence/core.json:sc_core.json

``dev`` prints every candidate's leave-one-category-out figures and the chosen map against the
shipped one (paired bootstrap); ``test`` (run once, after choosing) the shipped config's
confidence with and without the agreement on the test answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx_entropix.engine.agreement import agreement  # noqa: E402
from mlx_entropix.engine.confidence import (  # noqa: E402
    AGREEMENT_FEATURE,
    AGREEMENT_SUFFIX,
    CONFIDENCE_DIR,
    ConfidenceModel,
)
from mlx_entropix.eval import confidence_select as cs  # noqa: E402
from mlx_entropix.eval.confidence_cli import _load_records  # noqa: E402
from mlx_entropix.eval.confidence_fit import scores_report  # noqa: E402
from mlx_entropix.eval.confidence_stats import auroc, ece, paired_bootstrap  # noqa: E402

SHIPPED = CONFIDENCE_DIR / "smollm2-135m-instruct.json"
A = AGREEMENT_FEATURE
BASE = cs.Candidate("answer_sum_logprob (recal)", ("answer_sum_logprob",), recalibrate=True)
CANDIDATES = [
    BASE,  # the shipped raw map
    cs.Candidate("agreement", (A,)),
    cs.Candidate("agreement (recal)", (A,), recalibrate=True),
    cs.Candidate("agreement (isotonic)", (A,), kind="isotonic"),
    *[
        cs.Candidate(
            f"answer_sum_logprob + agreement l2={l2:g}{' (recal)' * r}",
            ("answer_sum_logprob", A),
            l2,
            recalibrate=r,
        )  # fmt: skip
        for l2 in (1.0, 10.0)
        for r in (False, True)
    ],
]


def with_agreement(greedy_path: str, sc_path: str) -> list[dict]:
    """The raw greedy records of ``greedy_path`` with ``sc_agreement`` (of ``sc_path``'s rows)
    in their features."""
    greedy = {r["item"]: r for r in _load_records([greedy_path], "greedy")}
    out = []
    for r in json.loads(Path(sc_path).read_text())["records"]:
        if r["mode"] != "sc" or r["item"] not in greedy:
            continue
        g = greedy[r["item"]]
        if g.get("format") != "raw":
            continue
        a = agreement(g["text"], [b["text"] for b in r["branches"]])
        out.append(dict(g, features=dict(g["features"], **{A: a})))
    return out


def _ci(x: list[float] | None) -> str:
    return "-" if x is None else f"[{x[0]:.3f}, {x[1]:.3f}]"


def _row(name: str, conf: list, recs: list[dict]) -> str:
    b = scores_report(conf, recs)["all"]
    boot = cs.bootstrap(conf, recs)
    top, acc = 100 * b["top_half_accuracy"], 100 * b["accuracy"]
    return (f"| {name} | {b['n']} | {b['auroc']:.3f} {_ci(boot['auroc'])} "
            f"| {b['within_category_auroc']:.3f} {_ci(boot['within_category_auroc'])} "
            f"| {b['ece']:.3f} {_ci(boot['ece'])} | {top:.1f} vs {acc:.1f} |")  # fmt: skip


HEAD = ("| map | answers | AUROC [95%] | within-category AUROC | ECE | most confident half "
        "vs all % |\n|---|---|---|---|---|---|")  # fmt: skip


def _paired(a: list, b: list, recs: list[dict]) -> str:
    y = [bool(r["correct"]) for r in recs]
    lines = []
    for name, stat in (("AUROC", auroc), ("ECE", ece)):
        d = paired_bootstrap(stat, a, b, y)  # type: ignore[arg-type]
        lo, hi = d["ci95"]
        lines.append(f"- {name}, difference: {d['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]")
    return "\n".join(lines)


def dev(pairs: list[str], write: bool) -> None:
    recs = [r for arg in pairs for r in with_agreement(*arg.split(":"))]
    n_cat = len({r["category"] for r in recs})
    print(f"dev raw answers: {len(recs)} of {n_cat} kinds, leave one category out\n")
    chosen, results, caps = cs.select(recs, CANDIDATES)
    print(f"arithmetic cap: {'raw' if caps else 'none'}\n")
    print("| candidate | AUROC | within-category AUROC | ECE | top half % | all % |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for c in CANDIDATES:
        b = results[c.name]["raw"]
        top, acc = 100 * b["top_half_accuracy"], 100 * b["accuracy"]
        print(f"| {c.name} | {b['auroc']:.3f} | {b['within_category_auroc']:.3f} | "
              f"{b['ece']:.3f} | {top:.1f} | {acc:.1f} |")  # fmt: skip
    pick = chosen["raw"]
    print(f"\nchosen: {pick.name}\n")
    if A not in pick.features:  # what the agreement would add: its best map, as ranked

        def ranking(c: cs.Candidate) -> float:
            b = results[c.name]["raw"]
            return b["auroc"] + b["within_category_auroc"]

        pick = max((c for c in CANDIDATES if A in c.features), key=ranking)
        print(f"(not chosen; the best map with the agreement, compared: {pick.name})\n")
    held_pick = cs.held_out(recs, {"raw": pick}, caps)
    held_base = cs.held_out(recs, {"raw": BASE}, caps)
    assert [r["item"] for r in held_pick[0]] == [r["item"] for r in held_base[0]]
    rs = held_pick[0]
    print(HEAD)
    print(_row(f"shipped: {BASE.name}", held_base[1], rs))
    print(_row(f"with agreement: {pick.name}", held_pick[1], rs))
    print(f"\nwith agreement - shipped (paired bootstrap 95%, {len(rs)} answers):")
    print(_paired(held_pick[1], held_base[1], rs))
    print("\nper kind, AUROC shipped -> with agreement (held out):")
    for cat in sorted({r["category"] for r in rs}):
        ix = [i for i, r in enumerate(rs) if r["category"] == cat]
        y = [bool(rs[i]["correct"]) for i in ix]
        a, b = auroc([held_base[1][i] for i in ix], y), auroc([held_pick[1][i] for i in ix], y)
        mean_a = sum(rs[i]["features"][A] for i in ix) / len(ix)
        f = "-" if a is None else f"{a:.2f}"
        g = "-" if b is None else f"{b:.2f}"
        print(f"- {cat}: {f} -> {g} (accuracy {sum(y) / len(y):.2f}, mean agreement {mean_a:.2f})")
    if write and A in chosen["raw"].features:
        model = ConfidenceModel.from_file(SHIPPED)
        fitted = cs.fit_chosen(recs, {"raw": pick}, {}, caps)
        data = json.loads(SHIPPED.read_text())
        data["maps"]["raw" + AGREEMENT_SUFFIX] = fitted.maps["raw"].to_dict()
        data["meta"]["chosen"]["raw" + AGREEMENT_SUFFIX] = pick.name
        data["meta"]["agreement"] = {
            "feature": A,
            "rows": "k hidden rows in normal mode (engine/agreement.py); fitted with k = 4",
            "fitted_on": [p.split(":")[0] for p in pairs],
            "rows_from": [p.split(":")[1] for p in pairs],
            "answers": len(recs),
            "selected_by": "leave one category out on dev (benchmarks/confidence_sc.py)",
        }
        SHIPPED.write_text(json.dumps(data, indent=1) + "\n")
        assert ConfidenceModel.from_file(SHIPPED).maps["raw"] == model.maps["raw"]
        print(f"\nwrote {SHIPPED.relative_to(ROOT)}: maps['raw{AGREEMENT_SUFFIX}']")


def test(pairs: list[str]) -> None:
    recs = [r for arg in pairs for r in with_agreement(*arg.split(":"))]
    model = ConfidenceModel.from_file(SHIPPED)
    if "raw" + AGREEMENT_SUFFIX not in model.maps:
        raise SystemExit("no agreement map shipped: nothing to test")
    shipped = [model({k: v for k, v in r["features"].items() if k != A}, "raw") for r in recs]
    sampled = [model(r["features"], "raw") for r in recs]
    print(f"test raw answers: {len(recs)} of {len({r['category'] for r in recs})} kinds "
          "(fitted on dev, run once)\n")  # fmt: skip
    print(HEAD)
    print(_row("shipped raw map (k = 0)", shipped, recs))
    print(_row(f"raw{AGREEMENT_SUFFIX} (k = 4)", sampled, recs))
    print(f"\nk = 4 - k = 0 (paired bootstrap 95%, {len(recs)} answers):")
    print(_paired(sampled, shipped, recs))
    print("\nper kind, AUROC k = 0 -> k = 4:")
    for cat in sorted({r["category"] for r in recs}):
        ix = [i for i, r in enumerate(recs) if r["category"] == cat]
        y = [bool(recs[i]["correct"]) for i in ix]
        a, b = auroc([shipped[i] for i in ix], y), auroc([sampled[i] for i in ix], y)
        f = "-" if a is None else f"{a:.2f}"
        g = "-" if b is None else f"{b:.2f}"
        print(f"- {cat}: {f} -> {g} (accuracy {sum(y) / len(y):.2f})")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("split", choices=("dev", "test"))
    p.add_argument("pairs", nargs="+", help="GREEDY.json:SC.json")
    p.add_argument("--write", action="store_true", help="dev: ship the chosen agreement map")
    args = p.parse_args()
    dev(args.pairs, args.write) if args.split == "dev" else test(args.pairs)
