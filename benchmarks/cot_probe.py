"""Branch exploration ("fork") prototype: branch on the top-k candidates at a trigger position,
continue every branch greedily as one batch, record per-branch scores; ``--analyse`` then scores
every selection rule x k from the saved records (no model needed).

    uv run benchmarks/cot_probe.py data/eval/dev.csv --k 10 --out /tmp/probe_dev.json
    uv run benchmarks/cot_probe.py --analyse /tmp/probe_dev.json

Decoding (matches the eval harness): prompt as ``build_prompt`` makes it (chat template for chat
items, raw ids for raw items), at most ``--max-tokens`` generated tokens in total, raw items stop
at the first newline, all stop at EOS. Greedy (one row) runs first; it records each step's metrics.
Triggers (positions where the k branches start, each continued greedily to the end):
  first    the first generated token (CoT-decoding, Wang and Zhou 2024)
  maxvent  the greedy step with the largest varentropy (before the answer ended)
  explore  the first greedy step in the "exploring" state of ``--config`` (none: no branching)
The branch set of a trigger is the top-k tokens at that position (rank 0 = greedy's token), so
a smaller k is a prefix of the recorded branches: one run with k=10 gives every k <= 10.
Per branch: the full text (greedy prefix + branch), the extracted answer, correct or not, and the
per-token p(top1), p(top2), entropy and log-prob of the chosen token, plus the char span of each
token, so the answer span (the tokens of the extracted answer) is found in the analysis.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401
from mlx_entropix.answers import _MARKERS, _NUMBER, extracted, match, parse_options  # noqa: E402
from mlx_entropix.eval.harness import build_prompt, load_items  # noqa: E402
from mlx_entropix.eval.stats import paired_difference, wilson  # noqa: E402

LN2 = math.log(2.0)


# --------------------------------------------------------------------------- decoding


def _copy_cache(cache, rows: int):
    import mlx.core as mx
    from mlx_lm.models.cache import KVCache

    out = []
    for c in cache:
        n = KVCache()
        n.keys = mx.repeat(c.keys[:, :, : c.offset], rows, axis=0)
        n.values = mx.repeat(c.values[:, :, : c.offset], rows, axis=0)
        n.offset = c.offset
        out.append(n)
    return out


def _step_stats(logits):
    """Per row: (top ids (B, 10), top probs (B, 10), entropy bits (B,), varentropy (B,))."""
    from mlx_entropix.uncertainty.metrics import logits_entropy

    import mlx.core as mx

    logits = logits.astype(mx.float32)
    logp = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    ids = mx.argsort(-logits, axis=-1)[:, :10]
    probs = mx.exp(mx.take_along_axis(logp, ids, axis=-1))
    ent, vent = logits_entropy(logits)
    return ids, probs, ent, vent


def decode(lm, prefix: list[int], first: list[int] | None, budget: int, stop_nl: bool):
    """Greedy continuation of ``prefix`` as one batch: one row per forced first token in
    ``first`` (None: one plain greedy row). Returns per row a list of steps
    (token, p1, p2, entropy, varentropy, logprob) and the metrics of every step."""
    from mlx_entropix.uncertainty.metrics import compute_metrics

    import mlx.core as mx

    eos = set(lm.tokenizer.eos_token_ids)
    cache = lm.model.make_cache()
    logits, scores = lm.model(mx.array(prefix)[None], cache, last_only=True)
    rows = 1 if first is None else len(first)
    if rows > 1:
        cache = _copy_cache(cache, rows)
        logits = mx.repeat(logits, rows, axis=0)
        scores = mx.repeat(scores, rows, axis=0)
    steps: list[list[tuple]] = [[] for _ in range(rows)]
    metrics_rows: list[list[list[float]]] = [[] for _ in range(rows)]
    done = [False] * rows
    texts = [""] * rows
    for t in range(budget):
        last = logits[:, -1].astype(mx.float32)
        met = compute_metrics(last, scores)
        ids, probs, ent, vent = _step_stats(last)
        logp = last - mx.logsumexp(last, axis=-1, keepdims=True)
        if t == 0 and first is not None:
            tok = mx.array(first, dtype=mx.int32)
        else:
            tok = ids[:, 0].astype(mx.int32)
        lp = mx.take_along_axis(logp, tok[:, None], axis=-1)[:, 0]
        mx.eval(tok, probs, ent, vent, lp, met)
        tl, pl, el, vl, lpl, ml = (x.tolist() for x in (tok, probs, ent, vent, lp, met))
        for r in range(rows):
            if done[r]:
                continue
            if tl[r] in eos:
                done[r] = True
                continue
            steps[r].append((tl[r], pl[r][0], pl[r][1], el[r], vl[r], lpl[r]))
            metrics_rows[r].append(ml[r])
            texts[r] = lm.tokenizer.decode([s[0] for s in steps[r]])
            if stop_nl and "\n" in texts[r]:
                done[r] = True
        if all(done) or t + 1 == budget:
            break
        logits, scores = lm.model(tok[:, None], cache, last_only=True)
    return steps, metrics_rows


def branch_record(lm, item, options, prefix_tokens: list[int], steps: list[tuple], stop_nl: bool):
    """Text, answer and per-token stats of one path (greedy prefix tokens + branch steps)."""
    tok = lm.tokenizer
    ids = prefix_tokens + [s[0] for s in steps]
    ends, text = [], ""
    for j in range(len(ids)):
        text = tok.decode(ids[: j + 1])
        ends.append(len(text))
    if stop_nl and "\n" in text:
        text = text[: text.index("\n")]
    return {
        "text": text,
        "ends": ends,  # char end of each token of the path (prefix included)
        "n_prefix": len(prefix_tokens),
        "p1": [s[1] for s in steps],
        "p2": [s[2] for s in steps],
        "ent": [s[3] for s in steps],
        "logp": [s[5] for s in steps],
        "first": tok.id_to_text(steps[0][0]) if steps else "",
        "extracted": extracted(text, item.kind, options),
        "correct": match(text, item.answer, item.kind, options),
    }


def probe_item(lm, item, k: int, max_tokens: int, cfg, triggers: list[str]) -> dict:
    from mlx_entropix.engine.generate import prepare_prompt
    from mlx_entropix.uncertainty.sampler import classify_states

    prompt = build_prompt(lm.tokenizer, item, None, ())
    ids = prepare_prompt(lm, prompt, None, max_tokens)
    stop_nl = item.format == "raw"
    options = parse_options(item.prompt) if item.kind == "choice" else None
    t0 = time.perf_counter()
    g_steps, g_met = decode(lm, ids, None, max_tokens, stop_nl)
    g_s = time.perf_counter() - t0
    g_steps, g_met = g_steps[0], g_met[0]
    greedy = branch_record(lm, item, options, [], g_steps, stop_nl)
    # greedy steps that lie in the answer text (before the stop)
    n_text = sum(1 for e in greedy["ends"][: len(g_steps)] if e <= len(greedy["text"]) + 0) or 1
    states = classify_states(g_met, cfg) if g_met else []
    rec = {"item": item.index, "category": item.category, "kind": item.kind, "answer": item.answer,
           "greedy": greedy, "greedy_s": g_s, "greedy_tokens": len(g_steps),
           "metrics": g_met, "states": states, "triggers": {}}  # fmt: skip
    for trig in triggers:
        pos = None
        if trig == "first":
            pos = 0
        elif trig == "maxvent" and g_met:
            vents = [m[1] for m in g_met[: max(n_text, 1)]]
            pos = max(range(len(vents)), key=vents.__getitem__)
        elif trig == "explore":
            pos = next(
                (i for i, s in enumerate(states[: max(n_text, 1)]) if s == "exploring"), None
            )
        if pos is None or pos >= max_tokens:
            rec["triggers"][trig] = None
            continue
        prefix = [s[0] for s in g_steps[:pos]]
        # candidates: top-k at that position of greedy (recomputed from its top ids)
        import mlx.core as mx

        cache = lm.model.make_cache()
        logits, _ = lm.model(mx.array(ids + prefix)[None], cache, last_only=True)
        cands = mx.argsort(-logits[0, -1].astype(mx.float32))[:k].tolist()
        t1 = time.perf_counter()
        b_steps, _ = decode(lm, ids + prefix, cands, max_tokens - pos, stop_nl)
        b_s = time.perf_counter() - t1
        rec["triggers"][trig] = {
            "pos": pos,
            "seconds": b_s,
            "branches": [branch_record(lm, item, options, prefix, st, stop_nl) for st in b_steps],
        }
    return rec


# --------------------------------------------------------------------------- analysis


def answer_span(br: dict, kind: str) -> tuple[int, int] | None:
    """Char span of the extracted answer in the text, or None (then: the whole branch)."""
    text = br["text"]
    if kind == "numeric":
        marks = list(_MARKERS.finditer(text))
        cands = []
        if marks:
            cands.append(marks[-1].end())
        if "=" in text:
            cands.append(text.rindex("=") + 1)
        cands.append(0)
        for start in cands:
            for m in _NUMBER.finditer(text, start):
                if m.group("int") is None and m.group("dec") is None:
                    continue
                return (m.start(), m.end())
        return None
    if kind == "choice" and br["extracted"]:
        m = re.search(rf"(?<![\w]){br['extracted']}(?![\w])", text)
        return (m.start(), m.end()) if m else None
    return None


def span_tokens(br: dict, kind: str) -> list[int]:
    """Indices (into the branch's own steps) of the tokens of the answer span."""
    n_pre, ends, text_len = br["n_prefix"], br["ends"], len(br["text"])
    n = len(br["p1"])
    idx_all = [j for j in range(n) if (ends[n_pre + j - 1] if n_pre + j > 0 else 0) < text_len]
    span = answer_span(br, kind)
    if span is None:
        return idx_all or list(range(n))
    a, b = span
    out = []
    for j in range(n):
        start = ends[n_pre + j - 1] if n_pre + j > 0 else 0
        end = ends[n_pre + j]
        if start < b and end > a:
            out.append(j)
    return out or idx_all or list(range(n))


def _mean(x):
    return sum(x) / len(x) if x else 0.0


def score(br: dict, kind: str, rule: str) -> float:
    n = len(br["p1"])
    if n == 0:
        return -1e9
    if rule == "conf_span":
        js = span_tokens(br, kind)
        return _mean([br["p1"][j] - br["p2"][j] for j in js])
    if rule == "conf_span_nofirst":  # the forced first token's margin is shared by all branches
        js = [j for j in span_tokens(br, kind) if j > 0] or span_tokens(br, kind)
        return _mean([br["p1"][j] - br["p2"][j] for j in js])
    if rule == "conf_all":
        return _mean([a - b for a, b in zip(br["p1"], br["p2"], strict=True)])
    if rule == "neg_entropy":
        return -_mean(br["ent"])
    if rule == "logprob":
        return sum(br["logp"])
    if rule == "mean_logprob":
        return _mean(br["logp"])
    raise ValueError(rule)


RULES = ("conf_span", "conf_span_nofirst", "conf_all", "neg_entropy", "logprob", "mean_logprob")


def select(branches: list[dict], kind: str, rule: str, aggregate: bool) -> dict:
    """The chosen branch. Branches with an extracted answer rank above those without."""
    have = [b for b in branches if b["extracted"] not in (None, "")] or branches
    if not aggregate:
        return max(have, key=lambda b: score(b, kind, rule))
    total: dict[str, float] = defaultdict(float)
    for b in have:
        total[str(b["extracted"])] += score(b, kind, rule)
    best = max(total, key=total.__getitem__)
    return max((b for b in have if str(b["extracted"]) == best), key=lambda b: score(b, kind, rule))


def analyse(path: str, ks: list[int]) -> str:
    recs = json.loads(Path(path).read_text())["records"]
    greedy = [float(r["greedy"]["correct"]) for r in recs]
    g_tok = sum(r["greedy_tokens"] for r in recs) / len(recs)
    g_s = sum(r["greedy_s"] for r in recs) / len(recs)
    lines = [
        f"{len(recs)} items; greedy {100 * _mean(greedy):.1f}%, {g_tok:.1f} tokens, "
        f"{g_s * 1000:.0f} ms per answer (row-by-row decode of this script)",
        "",
        "| trigger | k | rule | aggregate | accuracy % [Wilson 95%] | Δ vs greedy pts [paired 95%] "
        "| better/worse | tokens computed / answer | branch decode s / answer |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    triggers = sorted({t for r in recs for t in r["triggers"]})
    oracle_lines = []
    for trig in triggers:
        for k in ks:
            acc_or = []
            for rule in RULES:
                for agg in (False, True):
                    sc, toks, secs = [], [], []
                    for r in recs:
                        tr = r["triggers"].get(trig)
                        if tr is None:
                            sc.append(float(r["greedy"]["correct"]))
                            toks.append(r["greedy_tokens"])
                            secs.append(0.0)
                            continue
                        brs = tr["branches"][:k]
                        ch = select(brs, r["kind"], rule, agg)
                        sc.append(float(ch["correct"]))
                        pre = tr["pos"] if trig != "first" else 0
                        extra = r["greedy_tokens"] if trig != "first" else 0
                        toks.append(extra + sum(len(b["p1"]) for b in brs) + 0 * pre)
                        secs.append(tr["seconds"] * 1.0)
                    acc = _mean(sc)
                    lo, hi = wilson(acc, len(sc))
                    d = paired_difference(sc, greedy)
                    lines.append(
                        f"| {trig} | {k} | {rule} | {'sum/answer' if agg else 'best'} "
                        f"| {100 * acc:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] "
                        f"| {100 * d['mean']:+.1f} "
                        f"[{100 * d['ci95'][0]:+.1f}, {100 * d['ci95'][1]:+.1f}] "
                        f"| {d['wins']}/{d['losses']} | {_mean(toks):.1f} | {_mean(secs):.2f} |"
                    )
            for r in recs:
                tr = r["triggers"].get(trig)
                acc_or.append(
                    float(any(b["correct"] for b in tr["branches"][:k]))
                    if tr
                    else float(r["greedy"]["correct"])
                )
            oracle_lines.append(
                f"- oracle (any branch correct) {trig} k={k}: {100 * _mean(acc_or):.1f}%"
            )
    return "\n".join(lines + [""] + oracle_lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("csv", nargs="?")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--limit", type=int)
    p.add_argument("--config", help="thresholds for the 'explore' trigger (default: shipped)")
    p.add_argument("--triggers", default="first,maxvent,explore")
    p.add_argument("--out", default="/tmp/probe.json")
    p.add_argument("--analyse", help="a saved probe JSON: print the rule table")
    p.add_argument("--ks", default="3,5,10")
    p.add_argument("--stride", type=int, default=40, help="visit items i, i+stride, ... first")
    args = p.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    if args.analyse:
        print(analyse(args.analyse, ks))
        return 0
    from mlx_entropix.config import SamplerConfig
    from mlx_entropix.io.load import load

    lm = load(None)
    cfg = SamplerConfig.from_file(args.config) if args.config else lm.default_config
    items = load_items(args.csv)[: args.limit]
    if args.stride:  # interleave the categories, so a partial run covers all of them
        items = sorted(items, key=lambda it: (it.index % args.stride, it.index))
    recs = []
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        recs.append(probe_item(lm, item, args.k, args.max_tokens, cfg, args.triggers.split(",")))
        if (i + 1) % 20 == 0:
            print(f"{i + 1}/{len(items)} {time.perf_counter() - t0:.0f}s", file=sys.stderr)
            Path(args.out).write_text(json.dumps({"csv": args.csv, "records": recs}))
    Path(args.out).write_text(json.dumps({"csv": args.csv, "k": args.k, "records": recs}))
    print(analyse(args.out, [k for k in ks if k <= args.k]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
