"""Sampled agreement as a confidence feature (``engine/agreement.py``): the share of k rows
sampled in normal mode whose answer is the greedy answer's, read with the engine's own reader
(``agreement.answer_of``: the span reader without an answer kind, as a request has; ``--reader
grader``: the item's), next to the shipped map's score; per format, chosen with
``confidence_select``'s leave-one-category-out rule among the shipped map and maps that take
the agreement (``candidates``).

The rows come from an evaluation in mode sc of a set (its records keep every row's text), the
greedy answer and its features from that set's greedy result (``--signals``), matched by
prompt (a CSV of some of the set's items will do):

    uv run benchmarks/eval.py benchmarks/results/confidence_calib_raw.csv --modes sc \
        --sc-k 4 --seeds 1 --max-tokens 8 --out sc_calib_raw   # likewise calib2_raw; dev.csv's
        # raw items: data/eval/dev.csv --limit 160 --max-tokens 16 (word problems run longer);
        # chat sets: --max-tokens 32 (their greedy budget)
    uv run benchmarks/confidence_sc.py dev GREEDY.json:SC.json ... [--write]
    uv run benchmarks/confidence_sc.py test benchmarks/results/confidence/core.json:SC.json

``dev`` prints every candidate's leave-one-category-out figures and the best map with the
agreement against the shipped one (paired bootstrap); ``--write`` puts a chosen agreement map
into the shipped config (``"<format>+agreement"``; ``calibrate confidence`` does not write
it); ``test`` (run once, after choosing) the shipped config's confidence with and without the
agreement. The runs, their files and commands: ``benchmarks/results/confidence_sc.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlx_entropix.answers import normalize  # noqa: E402
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
from mlx_entropix.eval.harness import load_items  # noqa: E402

SHIPPED = CONFIDENCE_DIR / "smollm2-135m-instruct.json"
A = AGREEMENT_FEATURE


def shipped_candidate(fmt: str) -> cs.Candidate:
    """The shipped map's candidate of ``fmt`` (its name in the config's meta)."""
    name = json.loads(SHIPPED.read_text())["meta"]["chosen"][fmt]
    return next(c for c in cs.candidates() if c.name == name)


def candidates(fmt: str) -> list[cs.Candidate]:
    """The shipped map of ``fmt`` and maps that take the agreement: alone (Platt, recalibrated,
    isotonic) or beside the shipped map's features (logistic, l2 1 and 10, recalibrated or
    not)."""
    base = shipped_candidate(fmt)
    return [
        base,
        cs.Candidate("agreement", (A,)),
        cs.Candidate("agreement (recal)", (A,), recalibrate=True),
        cs.Candidate("agreement (isotonic)", (A,), kind="isotonic"),
        *[
            cs.Candidate(
                f"{base.name} + agreement l2={l2:g}{' (recal)' * r}",
                (*base.features, A),
                l2,
                recalibrate=r,
            )  # fmt: skip
            for l2 in (1.0, 10.0)
            for r in (False, True)
        ],
    ]


def _prompts(result: dict) -> list[str]:
    return [i.prompt for i in load_items(ROOT / result["run"]["csv"])]


def with_agreement(greedy_path: str, sc_path: str, reader: str = "engine") -> list[dict]:
    """The greedy records of ``greedy_path`` with ``sc_agreement`` (of ``sc_path``'s rows, the
    same prompts: a subset CSV may hold them) in their features. ``reader``: "engine", the
    engine's (``agreement.answer_of``, no answer kind, as a request); "grader", the item's."""
    greedy_prompts = _prompts(json.loads(Path(greedy_path).read_text()))
    greedy = {greedy_prompts[r["item"]]: r for r in _load_records([greedy_path], "greedy")}
    sc = json.loads(Path(sc_path).read_text())
    sc_prompts = _prompts(sc)
    out = []
    for r in sc["records"]:
        g = greedy.get(sc_prompts[r["item"]])
        if r["mode"] != "sc" or g is None:
            continue
        if reader == "engine":
            a = agreement(g["text"], [b["text"] for b in r["branches"]])
        else:
            mine = normalize(g["extracted"] or "")
            rows = [normalize(b["answer"] or "") for b in r["branches"]]
            a = sum(x == mine and x != "" for x in rows) / len(rows)
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


def dev_format(recs: list[dict], fmt: str) -> cs.Candidate:
    """One format's comparison (printed); the chosen candidate."""
    cands = candidates(fmt)
    print(f"## {fmt}: {len(recs)} dev answers of {len({r['category'] for r in recs})} kinds, "
          "leave one category out\n")  # fmt: skip
    chosen, results, caps = cs.select(recs, cands)
    print(f"check cap: {'yes' if caps else 'no'}\n")
    print("| candidate | AUROC | within-category AUROC | ECE | top half % | all % |\n"
          "|---|---|---|---|---|---|")  # fmt: skip
    for c in cands:
        b = results[c.name][fmt]
        top, acc = 100 * b["top_half_accuracy"], 100 * b["accuracy"]
        print(f"| {c.name} | {b['auroc']:.3f} | {b['within_category_auroc']:.3f} | "
              f"{b['ece']:.3f} | {top:.1f} | {acc:.1f} |")  # fmt: skip
    pick = chosen[fmt]
    print(f"\nchosen: {pick.name}\n")
    if A not in pick.features:  # what the agreement would add: its best map, as ranked

        def ranking(c: cs.Candidate) -> float:
            b = results[c.name][fmt]
            return b["auroc"] + b["within_category_auroc"]

        pick = max((c for c in cands if A in c.features), key=ranking)
        print(f"(not chosen; the best map with the agreement, compared: {pick.name})\n")
    held_pick = cs.held_out(recs, {fmt: pick}, caps)
    held_base = cs.held_out(recs, {fmt: cands[0]}, caps)
    assert [r["item"] for r in held_pick[0]] == [r["item"] for r in held_base[0]]
    rs = held_pick[0]
    print(HEAD)
    print(_row(f"shipped: {cands[0].name}", held_base[1], rs))
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
    print()
    return chosen[fmt]


def dev(pairs: list[str], reader: str, write: bool) -> None:
    recs = [r for arg in pairs for r in with_agreement(*arg.split(":"), reader)]
    print(f"agreement read by the {reader}'s reader; k = 4\n")
    for fmt in sorted({r.get("format", "chat") for r in recs}):
        mine = [r for r in recs if r.get("format", "chat") == fmt]
        pick = dev_format(mine, fmt)
        if write and A in pick.features:  # not reached on today's dev (see README)
            _, _, caps = cs.select(mine, candidates(fmt))
            fitted = cs.fit_chosen(mine, {fmt: pick}, {}, caps)
            data = json.loads(SHIPPED.read_text())
            data["maps"][fmt + AGREEMENT_SUFFIX] = fitted.maps[fmt].to_dict()
            data["meta"]["chosen"][fmt + AGREEMENT_SUFFIX] = pick.name
            SHIPPED.write_text(json.dumps(data, indent=1) + "\n")
            print(f"wrote {SHIPPED.relative_to(ROOT)}: maps['{fmt}{AGREEMENT_SUFFIX}']\n")


def test(pairs: list[str], reader: str) -> None:
    recs = [r for arg in pairs for r in with_agreement(*arg.split(":"), reader)]
    model = ConfidenceModel.from_file(SHIPPED)
    for fmt in sorted({r.get("format", "chat") for r in recs}):
        if fmt + AGREEMENT_SUFFIX not in model.maps:
            print(f"## {fmt}: no agreement map shipped, nothing to test\n")
            continue
        rs = [r for r in recs if r.get("format", "chat") == fmt]
        shipped = [model({k: v for k, v in r["features"].items() if k != A}, fmt) for r in rs]
        sampled = [model(r["features"], fmt) for r in rs]
        print(f"## {fmt}: {len(rs)} test answers of {len({r['category'] for r in rs})} kinds "
              "(fitted on dev, run once)\n")  # fmt: skip
        print(HEAD)
        print(_row("shipped map (k = 0)", shipped, rs))
        print(_row(f"{fmt}{AGREEMENT_SUFFIX} (k = 4)", sampled, rs))
        print(f"\nk = 4 - k = 0 (paired bootstrap 95%, {len(rs)} answers):")
        print(_paired(sampled, shipped, rs))
        print()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("split", choices=("dev", "test"))
    p.add_argument("pairs", nargs="+", help="GREEDY.json:SC.json")
    p.add_argument("--reader", choices=("engine", "grader"), default="engine",
                   help="whose reader gives each row's answer (default: the engine's)")  # fmt: skip
    p.add_argument("--write", action="store_true", help="dev: ship a chosen agreement map")
    args = p.parse_args()
    if args.split == "dev":
        dev(args.pairs, args.reader, args.write)
    else:
        test(args.pairs, args.reader)
