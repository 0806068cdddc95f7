"""Does the model's hidden state know when its answer is wrong? (Kadavath et al. 2022's P(IK);
Orgad et al. 2024 probe the exact answer tokens.) Every greedy dev answer is run again through
the model (prompt + the generated tokens) and the residual stream kept at three positions: the
prompt's last token, the token before the answer (whose output is the answer's first token)
and the answer's last token. A logistic probe on a few principal components, fitted per format
leaving one category out, is compared with the shipped map's score on the same answers:

    uv run benchmarks/confidence_probe.py extract   # ~3 min; /tmp/probe_states.npz
    uv run benchmarks/confidence_probe.py dev       # the dev table
    uv run benchmarks/confidence_probe.py combined  # + the shipped score, leave one kind out
    uv run benchmarks/confidence_probe.py kfold     # in distribution: 5 folds over dev
    uv run benchmarks/confidence_probe.py test      # the chosen stack on core (test), once
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import mlx_entropix  # noqa: E402, F401  (the BLAS preload, before mlx.core)

RESULTS = ROOT / "benchmarks/results/confidence"
DEV = ("dev", "word_problem_chat", "chat_dev", "calib_raw", "calib_chat", "calib2_raw",
       "calib2_chat")  # fmt: skip
TEST = ("core",)
STATES = Path("/tmp/probe_states.npz")
LAYERS = tuple(range(0, 31, 2))  # hidden states after the embedding (0) and each layer


def _records() -> list[tuple[str, dict]]:
    """Every answer, its span and features recomputed by today's ``confidence.py``."""
    from mlx_entropix.eval.confidence_fit import refeaturized

    out = []
    for name in DEV + TEST:
        result = json.loads((RESULTS / f"{name}.json").read_text())
        out += [(name, r) for r in refeaturized(result)]
    return out


def extract() -> None:
    from mlx_entropix.eval.harness import build_prompt, load_items
    from mlx_entropix.io.load import load

    import mlx.core as mx

    lm = load(None)
    tok, model = lm.tokenizer, lm.model
    items: dict[str, list] = {}
    keep, states = [], []
    for name, r in _records():
        csv = json.loads((RESULTS / f"{name}.json").read_text())["run"]["csv"]
        if csv not in items:
            items[csv] = load_items(ROOT / csv)
        item = items[csv][int(r["item"])]
        span, sig = r.get("answer_span"), r.get("signals")
        if not span or not sig:
            continue
        prompt = build_prompt(tok, item, None, ())
        ids = list(prompt) if item.format == "raw" else tok.apply_chat_template(prompt)
        n_prompt = len(ids)
        text, ends, begin, where = r["text"], sig["end"], 0, []
        for e in ends:  # each generated token's text, encoded alone (the generated id)
            piece = text[begin:e]
            sub = tok.encode(piece) if piece else []
            ids += sub
            where.append(len(ids) - 1)
            begin = max(begin, e)
        idx, begin = [], 0
        for i, e in enumerate(ends):  # confidence._span_indices
            if e > begin and begin < span[1] and e > span[0]:
                idx.append(i)
            begin = max(begin, e)
        if not idx:
            continue
        first = where[idx[0] - 1] if idx[0] > 0 else n_prompt - 1
        pos = [n_prompt - 1, first, where[idx[-1]]]
        h = model.model.embed_tokens(mx.array(ids)[None])
        got = [h[0, pos]]
        cache = model.make_cache()
        for layer, c in zip(model.layers, cache, strict=True):
            h, _ = layer(h, "causal", c)
            got.append(h[0, pos])
        arr = mx.stack([got[i] for i in LAYERS]).astype(mx.float32)  # (layers, 3, dim)
        states.append(np.array(arr))
        keep.append({"set": name, "item": r["item"], "category": r["category"],
                     "format": r["format"], "correct": bool(r["correct"]),
                     "features": r["features"]})  # fmt: skip
    np.savez_compressed(STATES, states=np.stack(states), meta=json.dumps(keep))
    print(f"{len(keep)} answers -> {STATES}")


def _load() -> tuple[np.ndarray, list[dict], object]:
    """The extracted states, their answers' metadata and the shipped confidence map."""
    from mlx_entropix.engine.confidence import shipped_model

    data = np.load(STATES)
    return data["states"], json.loads(str(data["meta"])), shipped_model("SmolLM2-135M-Instruct")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _fit(x: np.ndarray, y: np.ndarray, k: int, l2: float):
    """Standardize, project on the first ``k`` principal components, logistic (l2)."""
    from mlx_entropix.eval.confidence_fit import fit_logistic

    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    p = vt[:k].T
    zp = z @ p
    m, s = zp.mean(0), zp.std(0) + 1e-6
    w, b = fit_logistic((zp - m) / s, y, l2=l2)

    def predict(xn: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-((((xn - mu) / sd) @ p - m) / s @ w + b)))

    return predict


def _loco(x: np.ndarray, y: np.ndarray, cats: list[str], k: int, l2: float) -> np.ndarray:
    out = np.full(len(y), np.nan)
    for c in sorted(set(cats)):
        te = np.array([ci == c for ci in cats])
        if len(set(y[~te])) < 2:
            continue
        out[te] = _fit(x[~te], y[~te], k, l2)(x[te])
    return out


def _oof(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each answer scored by the probe fitted on the other folds."""
    out = np.zeros(len(y))
    for f in set(fold):
        te = fold == f
        out[te] = _fit(x[~te], y[~te], 32, 10.0)(x[te])
    return out


def _stack(probe: np.ndarray, z: np.ndarray, y: np.ndarray):
    """A logistic of (the probe's held-out logit, the shipped score's logit), fitted on ``y``;
    returns it as a function of the two on other answers."""
    from mlx_entropix.eval.confidence_fit import fit_logistic

    feats = np.stack([_logit(probe), z], 1)
    mu, sd = feats.mean(0), feats.std(0)
    w, b = fit_logistic((feats - mu) / sd, y, l2=1.0)
    return lambda p, zz: ((np.stack([_logit(p), zz], 1) - mu) / sd) @ w + b


def _report(scores: np.ndarray, y: np.ndarray, cats: list[str]) -> tuple[float, float]:
    from mlx_entropix.eval.confidence_stats import auroc

    ok = ~np.isnan(scores)
    a = auroc(list(scores[ok]), list(y[ok]))
    within = []
    for c in sorted(set(cats)):
        m = ok & np.array([ci == c for ci in cats])
        if len(set(y[m])) == 2:
            within.append(auroc(list(scores[m]), list(y[m])))
    return a, float(np.mean(within))


def dev() -> None:

    states, meta, shipped = _load()
    lines = ["| format | layer | position | 8 components, l2 1 | 32 components, l2 10 |",
             "|---|---|---|---|---|"]  # fmt: skip
    for fmt in ("raw", "chat"):
        ix = [i for i, m in enumerate(meta) if m["format"] == fmt and m["set"] in DEV]
        y = np.array([meta[i]["correct"] for i in ix])
        cats = [meta[i]["category"] for i in ix]
        base = np.array([(shipped(meta[i]["features"], fmt) or np.nan) for i in ix])
        a, w = _report(base, y, cats)
        print(
            f"{fmt}: {len(ix)} answers, {y.mean():.3f} right; shipped (in sample) {a:.3f} / {w:.3f}"
        )
        for li, layer in enumerate(LAYERS):
            for p, pname in enumerate(("prompt_end", "before_answer", "answer_last")):
                x = states[ix, li, p]
                row = []
                for k, l2 in ((8, 1.0), (32, 10.0)):
                    a, w = _report(_loco(x, y, cats, k, l2), y, cats)
                    row.append(f"{a:.3f} / {w:.3f}")
                lines.append(f"| {fmt} | {layer} | {pname} | " + " | ".join(row) + " |")
                print(lines[-1])
    (RESULTS / "probe_dev.md").write_text(
        "Hidden-state probe, dev, leave one category out: AUROC / within-category AUROC "
        "(`benchmarks/confidence_probe.py dev`)\n\n" + "\n".join(lines) + "\n"
    )


def combined() -> None:
    """The probe's (nested) leave-one-category-out logit beside the shipped map's score."""

    states, meta, shipped = _load()
    for fmt, layer in (("raw", 30), ("raw", 28), ("chat", 24), ("chat", 26)):
        ix = [i for i, m in enumerate(meta) if m["format"] == fmt and m["set"] in DEV]
        y = np.array([meta[i]["correct"] for i in ix])
        cats = [meta[i]["category"] for i in ix]
        x = states[ix, LAYERS.index(layer), 2]
        base = _logit(np.array([(shipped(meta[i]["features"], fmt) or 0.5) for i in ix]))
        out = np.full(len(y), np.nan)
        for c in sorted(set(cats)):
            te = np.array([ci == c for ci in cats])
            tr_cats = [ci for ci, t in zip(cats, te, strict=True) if not t]
            inner = _loco(x[~te], y[~te], tr_cats, 32, 10.0)
            ok = ~np.isnan(inner)
            stack = _stack(inner[ok], base[~te][ok], y[~te][ok])
            out[te] = stack(_fit(x[~te], y[~te], 32, 10.0)(x[te]), base[te])
        print(fmt, layer, "shipped", _report(base, y, cats), "with probe", _report(out, y, cats))


def kfold() -> None:
    """In distribution: 5 folds over dev's answers (every kind on both sides): the probe alone
    and stacked with the shipped score's logit (the probe's inner out-of-fold logit beside it)."""

    states, meta, shipped = _load()
    rng = np.random.default_rng(0)

    for fmt, layer in (("raw", 30), ("raw", 16), ("chat", 24), ("chat", 16)):
        ix = [i for i, m in enumerate(meta) if m["format"] == fmt and m["set"] in DEV]
        y = np.array([meta[i]["correct"] for i in ix])
        cats = [meta[i]["category"] for i in ix]
        x = states[ix, LAYERS.index(layer), 2]
        z = _logit(np.array([(shipped(meta[i]["features"], fmt) or 0.5) for i in ix]))
        fold = rng.permutation(len(ix)) % 5
        probe, both = _oof(x, y, fold), np.zeros(len(ix))
        for f in range(5):
            te = fold == f
            inner = _oof(x[~te], y[~te], rng.permutation(int((~te).sum())) % 5)
            both[te] = _stack(inner, z[~te], y[~te])(probe[te], z[te])
        print(fmt, layer, "shipped (in sample)", _report(z, y, cats), "probe 5-fold",
              _report(probe, y, cats), "stacked", _report(both, y, cats))  # fmt: skip


def test() -> None:
    """Chosen on dev (``kfold``, ``combined``): raw answers, the last layer at the answer's last
    token, stacked with the shipped score. Fitted on every dev raw answer, run once on core."""
    from mlx_entropix.eval.confidence_stats import auroc, paired_bootstrap

    states, meta, shipped = _load()
    rng = np.random.default_rng(0)

    def part(sets: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        ix = [i for i, m in enumerate(meta) if m["format"] == "raw" and m["set"] in sets]
        y = np.array([meta[i]["correct"] for i in ix])
        z = _logit(np.array([(shipped(meta[i]["features"], "raw") or 0.5) for i in ix]))
        return states[ix, LAYERS.index(30), 2], y, z, [meta[i]["category"] for i in ix]

    x, y, z, _ = part(DEV)
    stack = _stack(_oof(x, y, rng.permutation(len(y)) % 5), z, y)
    xt, yt, zt, ct = part(TEST)
    st = stack(_fit(x, y, 32, 10.0)(xt), zt)
    print("test raw", len(yt), "shipped", _report(zt, yt, ct), "stacked", _report(st, yt, ct))
    print("paired", paired_bootstrap(lambda s, c: auroc(list(s), list(c)), st, zt, yt))


if __name__ == "__main__":
    steps = {"extract": extract, "dev": dev, "combined": combined, "kfold": kfold, "test": test}
    steps[sys.argv[1]]()
