"""The accuracy-diversity frontier: every sampler on two axes, measured on the embedded model.

    uv run benchmarks/frontier.py --split dev            # the sweep (choose presets here)
    uv run benchmarks/frontier.py --split test --samplers greedy,minp_0.1,preset:precise,\\
        preset:balanced,preset:creative                  # report the chosen ones

Accuracy: questions with one answer (``data/eval/dev.csv``, first ``--items-per-category`` of
each category; test: ``data/eval/core.csv``, all), ``--seeds`` seeds per item (greedy: one),
scored as ``benchmarks/eval.py`` scores them. Diversity: open prompts (``data/open/{dev,test}
.csv``), ``--open-seeds`` seeds each, ``diversity.py`` (distinct word n-grams across the
seeds' outputs, 0 = identical, 1 = nothing shared), with two gibberish guards beside it: the
mean log p of the chosen tokens under the model and the within-output repetition rate.
"differs" is the share of open prompts whose first seed's text differs from greedy's.

Samplers (names): ``greedy``; ``topp_T`` (normal, temperature T, top-p 0.9, no top-k/min-p);
``minp_P`` (normal, T 1, min-p P, no top-p/top-k); ``heat_H`` (entropix, ``calibrate.heat_policy``
at heat H on the calibration metrics ``--metrics``); ``preset:NAME`` (a shipped preset);
``NAME-no_STATE`` (that sampler with STATE's action replaced by argmax: the ablation).
Every generation of a run is a row of one batch (``eval/rows.py``). Output: ``--out``.json (all
records), .md (tables) and .png (the plot).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.answers import match, parse_options  # noqa: E402
from mlx_entropix.config import STATE_NAMES, SamplerConfig, apply_preset  # noqa: E402
from mlx_entropix.eval.harness import build_prompt, item_seed, load_items  # noqa: E402
from mlx_entropix.eval.stats import paired_difference, wilson  # noqa: E402

import numpy as np  # noqa: E402
from diversity import diversity, mean_logprob, repetition_rate  # noqa: E402  (benchmarks/)

DEV_SWEEP = ("greedy,topp_0.5,topp_0.7,topp_1.0,minp_0.05,minp_0.1,minp_0.2,preset:precise,"
             "heat_0.5,heat_0.8,heat_1.2")  # fmt: skip
TEST_SET = "greedy,minp_0.1,topp_0.7,preset:precise,preset:balanced,preset:creative"


def make_sampler(
    name: str, base: SamplerConfig, metrics: np.ndarray | None
) -> tuple[str, SamplerConfig]:
    """(mode, config) of a sampler name (module docstring)."""
    if "-no_" in name:
        inner, state = name.split("-no_")
        if state not in STATE_NAMES:
            raise ValueError(f"unknown state {state!r} in {name!r}")
        mode, cfg = make_sampler(inner, base, metrics)
        return mode, cfg.merged({"greedy_states": [state]})
    if name == "greedy":
        return "greedy", base
    if name.startswith("topp_"):
        t = float(name[5:])
        return "normal", base.merged({"temperature": t, "top_p": 0.9, "top_k": 0, "min_p": 0.0})
    if name.startswith("minp_"):
        p = float(name[5:])
        return "normal", base.merged({"temperature": 1.0, "top_p": 1.0, "top_k": 0, "min_p": p})
    if name.startswith("heat_"):
        from mlx_entropix.eval.calibrate import heat_policy

        if metrics is None:
            raise ValueError("heat_* samplers need --metrics (the calibration metrics)")
        return "entropix", heat_policy(metrics, base, float(name[5:]))
    if name.startswith("preset:"):
        return "entropix", apply_preset(base, name[7:])
    raise ValueError(f"unknown sampler {name!r}")


def eval_items(split: str, per_category: int):
    items = load_items(ROOT / "data" / "eval" / ("dev.csv" if split == "dev" else "core.csv"))
    if per_category <= 0:
        return items
    taken: dict[str, int] = {}
    out = []
    for it in items:
        if taken.get(it.category, 0) < per_category:
            taken[it.category] = taken.get(it.category, 0) + 1
            out.append(it)
    return out


def open_prompts(split: str) -> list[str]:
    with (ROOT / "data" / "open" / f"{split}.csv").open(newline="") as f:
        return [r["prompt"] for r in csv.DictReader(f)]


def run_group(lm, samplers: dict[str, tuple[str, SamplerConfig]], items, prompts, args) -> dict:
    """Every generation of several samplers, as rows of one batch: {name: run}."""
    from mlx_entropix.engine.generate import prepare_prompt
    from mlx_entropix.eval.rows import Job, run_jobs

    acc_ids = {
        it.index: prepare_prompt(lm, build_prompt(lm.tokenizer, it, None, ())) for it in items
    }
    open_ids = [prepare_prompt(lm, p) for p in prompts]
    acc_jobs, open_jobs = [], []
    for name, (mode, cfg) in samplers.items():
        seeds = 1 if mode == "greedy" else args.seeds
        open_seeds = 1 if mode == "greedy" else args.open_seeds
        acc_jobs += [
            Job((name, it.index), acc_ids[it.index], cfg, mode,
                tuple(item_seed(0, it.index, j) for j in range(seeds)),
                ("\n",) if it.format == "raw" else ())
            for it in items
        ]  # fmt: skip
        open_jobs += [Job((name, i), ids, cfg, mode,
                          tuple(1000 + 7919 * i + j for j in range(open_seeds)))
                      for i, ids in enumerate(open_ids)]  # fmt: skip
    t = time.perf_counter()
    acc = run_jobs(lm, acc_jobs, max_tokens=args.max_tokens, max_rows=args.max_rows)
    opn = run_jobs(lm, open_jobs, max_tokens=args.open_max_tokens, max_rows=args.max_rows)
    seconds = time.perf_counter() - t
    by_item = {it.index: it for it in items}
    out = {}
    for name, (mode, cfg) in samplers.items():
        mine_acc = [r for r in acc if r.key[0] == name]
        mine_open = [r for r in opn if r.key[0] == name]
        scores: dict[int, list[float]] = {}
        for r in mine_acc:
            it = by_item[r.key[1]]
            options = parse_options(it.prompt) if it.kind == "choice" else None
            ok = float(match(r.text, it.answer, it.kind, options))
            scores.setdefault(it.index, []).append(ok)
        states: dict[str, int] = {}
        for r in [*mine_acc, *mine_open]:
            for s in r.states:
                states[s] = states.get(s, 0) + 1
        texts: dict[int, list[str]] = {}
        for r in mine_open:
            texts.setdefault(r.key[1], []).append(r.text)
        out[name] = {
            "name": name,
            "mode": mode,
            "config": cfg.model_dump(),
            "item_scores": {str(k): sum(v) / len(v) for k, v in scores.items()},
            "acc_texts": {str(r.key[1]): r.text for r in mine_acc[::-1]},  # first seed's
            "open_texts": {str(k): v for k, v in texts.items()},
            "open_logprob": mean_logprob([r.logprobs for r in mine_open]),
            "open_repetition": float(np.mean([repetition_rate(r.text) for r in mine_open])),
            "state_counts": states,
            "tokens": sum(r.tokens for r in [*mine_acc, *mine_open]),
            "group_seconds": seconds,
        }
    return out


def summarise(runs: dict[str, dict], ref: str) -> dict[str, dict]:
    """Per sampler: accuracy (Wilson), diversity, guards, paired differences vs greedy and
    vs ``ref`` (accuracy on items, diversity on prompts)."""
    out = {}
    greedy = runs.get("greedy")
    for name, run in runs.items():
        items = sorted(run["item_scores"], key=int)
        acc = [run["item_scores"][k] for k in items]
        divs = {k: diversity(v) for k, v in run["open_texts"].items()}
        p = float(np.mean(acc))
        row = {
            "accuracy": p,
            "accuracy_ci95": wilson(p, len(acc)),
            "diversity": float(np.mean(list(divs.values()))),
            "open_logprob": run["open_logprob"],
            "open_repetition": run["open_repetition"],
            "state_shares": {
                s: c / max(sum(run["state_counts"].values()), 1)
                for s, c in run["state_counts"].items()
            },  # fmt: skip
        }
        for label, other in (("greedy", greedy), (ref, runs.get(ref))):
            if other is None or other is run:
                continue
            keys = [k for k in items if k in other["item_scores"]]
            row[f"vs_{label}_accuracy"] = paired_difference(
                [run["item_scores"][k] for k in keys], [other["item_scores"][k] for k in keys]
            )
            pk = sorted(divs, key=int)
            odiv = {k: diversity(v) for k, v in other["open_texts"].items()}
            row[f"vs_{label}_diversity"] = paired_difference(
                [divs[k] for k in pk], [odiv[k] for k in pk]
            )
        if greedy is not None:
            row["differs_from_greedy"] = float(np.mean([
                run["open_texts"][k][0] != greedy["open_texts"][k][0] for k in run["open_texts"]
            ]))  # fmt: skip
        out[name] = row
    return out


def markdown(summary: dict[str, dict], ref: str, meta: dict) -> str:
    def pts(d: dict | None) -> str:
        if not d:
            return ""
        lo, hi = d["ci95"]
        return f"{100 * d['mean']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    lines = [
        f"Split {meta['split']}: {meta['n_items']} items x {meta['seeds']} seeds (greedy 1), "
        f"{meta['n_open']} open prompts x {meta['open_seeds']} seeds; max tokens "
        f"{meta['max_tokens']} / {meta['open_max_tokens']}.",
        "",
        f"| sampler | accuracy % [95% CI] | vs greedy, pts | vs {ref}, pts | diversity "
        f"| vs {ref}, diversity x100 | differs from greedy | mean log p | repetition |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        lo, hi = r["accuracy_ci95"]
        lines.append(
            f"| {name} | {100 * r['accuracy']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] "
            f"| {pts(r.get('vs_greedy_accuracy'))} | {pts(r.get(f'vs_{ref}_accuracy'))} "
            f"| {r['diversity']:.3f} | {pts(r.get(f'vs_{ref}_diversity'))} "
            f"| {r.get('differs_from_greedy', 0):.0%} | {r['open_logprob']:.2f} "
            f"| {r['open_repetition']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def plot(summary: dict[str, dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    families = {"top-p (T sweep)": "topp_", "min-p (T 1)": "minp_", "entropix heat": "heat_",
                "entropix presets": "preset:"}  # fmt: skip
    for label, prefix in families.items():
        pts = sorted((r["diversity"], 100 * r["accuracy"], n) for n, r in summary.items()
                     if n.startswith(prefix) and "-no_" not in n)  # fmt: skip
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
            for x, y, n in pts:
                ax.annotate(n.split(":")[-1].split("_")[-1], (x, y), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
    abl = [(r["diversity"], 100 * r["accuracy"], n) for n, r in summary.items() if "-no_" in n]
    if abl:
        ax.plot([a[0] for a in abl], [a[1] for a in abl], "x", color="grey", label="ablations")
        for x, y, n in abl:
            ax.annotate(n.split("-no_")[1], (x, y), fontsize=7, color="grey",
                        xytext=(3, -8), textcoords="offset points")  # fmt: skip
    if "greedy" in summary:
        g = summary["greedy"]
        ax.plot([g["diversity"]], [100 * g["accuracy"]], "k*", ms=12, label="greedy")
    ax.set_xlabel("diversity on open prompts (distinct n-grams across seeds, 0-1)")
    ax.set_ylabel("accuracy on one-answer questions (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# What a preset sets: the policy, not the model's calibrated thresholds nor normal mode's base
# parameters nor fork mode's settings.
POLICY_KEYS = tuple(
    k for k in SamplerConfig.model_fields
    if k not in ("temperature", "top_p", "top_k", "min_p", "low_ent", "low_vent", "med_ent",
                 "high_ent", "high_vent", "clarifying_token", "greedy_states")
    and not k.startswith("fork_")
)  # fmt: skip


def write_presets(spec: str, base: SamplerConfig, metrics: np.ndarray | None) -> None:
    """``NAME=SAMPLER,...``: each preset's overrides are that sampler's policy keys; the
    summaries already in the file are kept (they are written by hand from the figures)."""
    from mlx_entropix.config import PRESETS_FILE

    old = json.loads(PRESETS_FILE.read_text()) if PRESETS_FILE.exists() else {}
    out = {}
    for pair in spec.split(","):
        name, sampler = pair.split("=")
        _, cfg = make_sampler(sampler, base, metrics)
        summary = old.get(name, {}).get("summary", f"as {sampler} on the frontier")
        out[name] = {"summary": summary, "overrides": {k: getattr(cfg, k) for k in POLICY_KEYS}}
    PRESETS_FILE.write_text(json.dumps(out, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--split", choices=("dev", "test"), default="dev")
    ap.add_argument("--samplers", default=None, help="comma list (default: dev sweep / test set)")
    ap.add_argument("--items-per-category", type=int, default=4, help="first N each; 0: all")
    ap.add_argument("--open-limit", type=int, default=0, help="first N open prompts; 0: all")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--open-seeds", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--open-max-tokens", type=int, default=16)
    ap.add_argument("--max-rows", type=int, default=64, help="rows in flight at most")
    ap.add_argument("--group", type=int, default=4, help="samplers per batch run")
    ap.add_argument("--metrics", default=str(ROOT / "benchmarks/results/calibration_metrics.json"))
    ap.add_argument("--ref", default="minp_0.1", help="the baseline of the paired columns")
    ap.add_argument("--out", default=None, help="output prefix (default results/frontier_SPLIT)")
    ap.add_argument("--report-only", action="store_true", help="re-summarise the JSON")
    ap.add_argument("--merge", default=None, help="A.json,B.json: their runs into --out first")
    ap.add_argument("--write-presets", default=None, help="NAME=SAMPLER,... into configs/presets")
    args = ap.parse_args()
    if args.write_presets:
        from mlx_entropix.io.load import load

        mpath = Path(args.metrics)
        metrics = np.array(json.loads(mpath.read_text())) if mpath.exists() else None
        write_presets(args.write_presets, load(None).default_config, metrics)
        return 0
    out = Path(args.out or ROOT / f"benchmarks/results/frontier_{args.split}")
    names = (args.samplers or (DEV_SWEEP if args.split == "dev" else TEST_SET)).split(",")
    path = out.with_suffix(".json")
    data = json.loads(path.read_text()) if path.exists() else {}
    runs: dict[str, dict] = data.get("runs", {})
    for other in (args.merge or "").split(","):
        if other:  # runs of the same split measured by parallel processes
            runs.update(json.loads(Path(other).read_text())["runs"])
    items, prompts = eval_items(args.split, args.items_per_category), open_prompts(args.split)
    prompts = prompts[: args.open_limit or None]
    meta = {"split": args.split, "n_items": len(items), "seeds": args.seeds,
            "n_open": len(prompts), "open_seeds": args.open_seeds, "max_tokens": args.max_tokens,
            "open_max_tokens": args.open_max_tokens}  # fmt: skip
    if not args.report_only:
        from mlx_entropix.io.load import load

        lm = load(None)
        mpath = Path(args.metrics)
        metrics = np.array(json.loads(mpath.read_text())) if mpath.exists() else None
        todo = [n for n in names if n not in runs]  # resumable: finished samplers are kept
        try:
            built = {n: make_sampler(n, lm.default_config, metrics) for n in todo}
        except ValueError as err:
            print(f"frontier: error: {err}", file=sys.stderr)
            return 2
        for g in range(0, len(todo), args.group):
            group = {n: built[n] for n in todo[g : g + args.group]}
            runs.update(run_group(lm, group, items, prompts, args))
            for n in group:
                acc = np.mean(list(runs[n]["item_scores"].values()))
                print(f"{n}: acc {acc:.3f}, {runs[n]['tokens']} tokens", file=sys.stderr)
            path.write_text(json.dumps({"run": meta, "runs": runs}) + "\n")
    order = names if args.samplers else [*names, *runs]  # named: only those, in that order
    ordered = {n: runs[n] for n in order if n in runs}
    summary = summarise(ordered, args.ref)
    out.with_suffix(".json").write_text(
        json.dumps({"run": meta, "summary": summary, "runs": runs}) + "\n"
    )
    out.with_suffix(".md").write_text(markdown(summary, args.ref, meta))
    plot(summary, str(out.with_suffix(".png")), f"SmolLM2-135M, {args.split} split")
    print(markdown(summary, args.ref, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
