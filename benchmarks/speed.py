"""What does entropix cost? Decode/prefill speed, time to first token and memory, per mode.

Same device, weights and prompts for every runner:
  entropix, normal, greedy   our engine (``mlx_entropix.engine.generate.generate``), full events
  mlx-lm greedy              mlx-lm's ``generate_step`` (argmax) on mlx-lm's own Llama holding
                             the same weights (``load.to_mlx_lm``), fed the same token ids
at prompt lengths of about 50, 500 and 2000 tokens (a chat prompt asking for a long story).

Definitions (identical for every runner):
  TTFT          seconds from the call until the first token is available (prefill + 1 step)
  prefill tok/s prompt tokens / TTFT
  decode tok/s  (tokens - 2) / (last token's time - second token's): the steady state (our
                first token is read before step 1 is queued, mlx-lm's after: not comparable)
  peak MiB      ``mx.get_peak_memory()`` (MLX allocator: weights + KV cache + activations),
                reset per run; ``ru_maxrss`` (whole process, never decreases) once at the end.
Runners are interleaved within each repeat (a busy neighbour slows all of them alike); every
figure is the median over the repeats with its min-max spread, and each ratio is the median of
the per-repeat ratios (paired within a repeat). The load average is recorded per length.
``--ablations [NAME ...]`` adds engine runners with one remedy undone (all, or those named:
uncompiled steps; q.k^T twice in the last layer; MLX's softmax in long-context attention),
``--breakdown`` two decode-only loops of our model (argmax only; + metrics and the logits
copied to the host). Headline: entropix decode tok/s / mlx-lm greedy decode tok/s.

    uv run benchmarks/speed.py                        # 5 repeats, 50/500/2000 tokens
    uv run benchmarks/speed.py --lengths 50 --tokens 32 --repeats 3   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate  # noqa: E402
from mlx_entropix.eval.reference_model import to_mlx_lm  # noqa: E402
from mlx_entropix.io.load import LoadedModel, load  # noqa: E402
from mlx_entropix.models import llama as model_module  # noqa: E402
from mlx_entropix.runtime.device import blas_phase, runtime_info  # noqa: E402

import mlx.core as mx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
PLOT = ROOT / "images" / "speed.png"
RUNNERS = ("entropix", "normal", "greedy", "mlx-lm greedy")
TASK = "\n\nUsing the notes above, write a long, detailed story about a trip around the world."
SEED = 1234
# Decode-only loops that isolate where the engine's time goes (see ``device_loop``).
THREAD_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "KMP_BLOCKTIME")
BREAKDOWN = {"our model, argmax only": False, "our model + metrics + logits to host": True}
# Engine runners with one remedy of issue 13 undone: (mode, what to undo).
ABLATIONS = {
    "entropix, uncompiled": ("entropix", "compile"),
    "greedy, uncompiled": ("greedy", "compile"),
    "entropix, q.k twice": ("entropix", "one_qk"),
    "greedy, MLX softmax": ("greedy", "softmax"),
}


@contextmanager
def undone(lm: LoadedModel, what: str | None) -> Iterator[LoadedModel]:
    """``lm`` with one remedy switched off for the duration (None: as shipped)."""
    if what == "compile":
        yield replace(lm, compile_steps=False)
    elif what == "one_qk":
        model_module.ONE_QK_ON_CPU = False
        try:
            yield lm
        finally:
            model_module.ONE_QK_ON_CPU = True
    elif what == "softmax":  # long-context attention with MLX's softmax (softmax_keys off)
        keys, model_module.FAST_SOFTMAX_KEYS = model_module.FAST_SOFTMAX_KEYS, None
        try:
            yield lm
        finally:
            model_module.FAST_SOFTMAX_KEYS = keys
    else:
        yield lm


def notes_text() -> str:
    """Varied, deterministic prose to fill long prompts (the project's own eval items)."""
    import csv

    lines = []
    for name in ("word_problem_chat", "capital_choice", "capital"):
        with (ROOT / "data" / "eval" / f"{name}.csv").open(newline="") as f:
            lines += [r["prompt"].replace("\n", " ") for r in csv.DictReader(f)]
    return "\n".join(lines * 3)


def prompt_ids(lm: LoadedModel, target: int) -> list[int]:
    """Chat-template ids of about ``target`` tokens: the notes cut to size, then the task."""
    notes = notes_text()
    tok = lm.tokenizer

    def ids(chars: int) -> list[int]:
        text = (notes[:chars] + TASK) if chars else TASK.strip()
        return tok.apply_chat_template([{"role": "user", "content": text}])

    overhead = len(ids(0))
    chars = max(0, (target - overhead) * 4)
    for _ in range(4):  # refine the chars-per-token estimate
        n = len(ids(chars))
        if abs(n - target) <= max(2, target // 50) or chars == 0:
            break
        chars = max(0, int(chars * (target - overhead) / max(n - overhead, 1)))
    return ids(chars)


def timed(tokens: Iterator[Any], prompt: int) -> dict[str, Any]:
    """Consume a token stream: wall times of the call, first, second and last token, and the
    process CPU time per decode token (robust to neighbours on a shared machine)."""
    mx.reset_peak_memory()
    start = time.perf_counter()
    first = second = last = start
    cpu_second = cpu_last = time.process_time()
    n = 0
    for _ in tokens:
        last, cpu_last = time.perf_counter(), time.process_time()
        if n == 0:
            first = last
        elif n == 1:
            second, cpu_second = last, cpu_last
        n += 1
    ttft = first - start
    return {
        "prompt_tokens": prompt,
        "tokens": n,
        "ttft_s": ttft,
        "prefill_tok_s": prompt / ttft if ttft > 0 else 0.0,
        "decode_tok_s": (n - 2) / (last - second) if n > 2 and last > second else 0.0,
        "peak_mib": mx.get_peak_memory() / 2**20,
        "decode_cpu_ms_per_tok": 1e3 * (cpu_last - cpu_second) / (n - 2) if n > 2 else 0.0,
    }


def run_engine(
    lm: LoadedModel, ids: list[int], mode: str, tokens: int, top_logprobs: int = 5
) -> dict[str, Any]:
    events = generate(lm, ids, mode=mode, max_tokens=tokens, seed=SEED, top_logprobs=top_logprobs)
    return timed((ev for ev in events if ev.type == "token"), len(ids))


def run_mlx_lm(ref: Any, ids: list[int], tokens: int) -> dict[str, Any]:
    from mlx_lm.generate import generate_step

    blas_phase(True)  # mlx-lm as it runs alone: the BLAS's default threads (ours: per phase)
    return timed(generate_step(mx.array(ids), ref, max_tokens=tokens), len(ids))


def device_loop(lm: LoadedModel, ids: list[int], tokens: int, metrics: bool) -> float:
    """Decode tok/s of our model alone: argmax on the device, one host sync per token;
    ``metrics``: also the six metrics (uncompiled) and the logits copied to the host."""
    from mlx_entropix.uncertainty.metrics import compute_metrics

    import numpy as np

    cache = lm.model.make_cache()

    def step(tok: mx.array) -> tuple[mx.array, ...]:
        logits, scores = lm.model(tok[None], cache)
        last = logits[0, -1].astype(mx.float32)
        nxt = mx.argmax(last)[None]
        if metrics:
            return nxt, last, compute_metrics(last[None], scores)[0]
        return (nxt,)

    out = step(mx.array(ids))
    mx.eval(*out)
    start = time.perf_counter()
    for _ in range(tokens):
        nxt = step(out[0])
        mx.async_eval(*nxt)
        if metrics:
            np.array(out[1])  # the engine's host copy of the logits
            out[2].tolist()
        else:
            out[0].item()
        out = nxt
    out[0].item()
    return tokens / (time.perf_counter() - start)


def plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = result["rows"]
    fig = Figure(figsize=(14, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    colours = {"entropix": "#0072B2", "normal": "#56B4E9", "greedy": "#666666",
               "mlx-lm greedy": "#D55E00"}  # fmt: skip
    panels = [("decode_tok_s", "decode tokens/s (median)", "Decode speed"),
              ("ttft_s", "seconds", "Time to first token"),
              ("peak_mib", "MiB (mx.get_peak_memory)", "Peak MLX memory")]  # fmt: skip
    extra = {name: "#999999" for name in BREAKDOWN}
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
        for runner in RUNNERS + (tuple(BREAKDOWN) if key == "decode_tok_s" else ()):
            mine = sorted(
                (r for r in rows if r["runner"] == runner), key=lambda r: r["prompt_tokens"]
            )
            if not mine:
                continue
            xs, ys = [r["prompt_tokens"] for r in mine], [r[key] for r in mine]
            style = "--" if runner.startswith("mlx-lm") else "-"
            if runner in extra:  # the decode-only loops: thin dotted references
                style = ":" if BREAKDOWN[runner] else "-."
            colour = colours.get(runner, extra.get(runner))
            ax.plot(xs, ys, style, marker="o", label=runner, color=colour)
            if all(f"{key}_spread" in r for r in mine):  # min-max over the repeats
                lo, hi = zip(*[r[f"{key}_spread"] for r in mine], strict=True)
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.12)
        ax.set(xscale="log", xlabel="prompt tokens", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    ratio = result["headline"]["entropix_over_mlx_lm_decode"]
    fig.suptitle(
        f"{result['model']} on {result['device']} ({result['cpus']} CPUs, BLAS {result['blas']}): "
        f"entropix / mlx-lm greedy decode = {ratio:.2f}x (mean over lengths of median ratios)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each figure over the repeats, with the (min, max) spread of the rates."""
    out = dict(runs[0])
    for key in ("ttft_s", "prefill_tok_s", "decode_tok_s", "decode_cpu_ms_per_tok", "peak_mib"):
        if key in runs[0]:
            values = [r[key] for r in runs]
            out[key] = statistics.median(values)
            out[f"{key}_spread"] = [min(values), max(values)]
    out["repeats"] = len(runs)
    return out


def paired_ratio(runs: dict[str, list[dict]], num: str, den: str, key: str) -> dict[str, Any]:
    """Median over repeats of num/den measured in the same repeat, with its spread."""
    ratios = [a[key] / b[key] for a, b in zip(runs[num], runs[den], strict=True) if b[key] > 0]
    return {"median": statistics.median(ratios), "spread": [min(ratios), max(ratios)]}


def measure_length(
    lm: LoadedModel, ref: Any, ids: list[int], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All runners at one prompt length, interleaved per repeat: (rows, ratios)."""
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "mlx-lm greedy": lambda: run_mlx_lm(ref, ids, args.tokens)
    }
    for mode in RUNNERS[:3]:
        runners[mode] = lambda mode=mode: run_engine(lm, ids, mode, args.tokens, args.top_logprobs)
    chosen = ABLATIONS if args.ablations == [] else {n: ABLATIONS[n] for n in args.ablations or ()}
    for name, (mode, what) in chosen.items():

        def ablated(mode: str = mode, what: str = what) -> dict[str, Any]:
            with undone(lm, what) as variant:
                return run_engine(variant, ids, mode, args.tokens, args.top_logprobs)

        runners[name] = ablated
    if args.breakdown:
        for name, with_metrics in BREAKDOWN.items():
            runners[name] = lambda m=with_metrics: {
                "prompt_tokens": len(ids),
                "decode_tok_s": device_loop(lm, ids, args.tokens, m),
            }
    for mode in RUNNERS[:3]:  # warm-up (first-call overheads, compiles)
        run_engine(lm, ids[:64], mode, 4)
    run_mlx_lm(ref, ids[:64], 4)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    order = list(runners)
    load = [os.getloadavg()[0]]
    for rep in range(args.repeats):
        for name in order[rep % len(order) :] + order[: rep % len(order)]:  # rotate the order
            runs[name].append(runners[name]())
        load.append(os.getloadavg()[0])
    rows = [{"runner": name, **summarise(r)} for name, r in runs.items()]
    ratios = {
        f"{num} / {den}{suffix}": paired_ratio(runs, num, den, key)
        for key, suffix in (("decode_tok_s", ""), ("decode_cpu_ms_per_tok", " (CPU ms/token)"))
        for num, den in [(m, "mlx-lm greedy") for m in RUNNERS[:3]]
        + [(name, "mlx-lm greedy") for name in runners if name not in RUNNERS]
        + [
            ("entropix", "entropix, uncompiled"),
            ("greedy", "greedy, uncompiled"),
            ("entropix", "entropix, q.k twice"),
        ]  # fmt: skip
        if num in runs and den in runs and key in runs[num][0] and key in runs[den][0]
    }
    ratios["load_avg_1min"] = load
    return rows, ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model path (default: the embedded SmolLM2-135M)")
    p.add_argument("--lengths", default="50,500,2000", help="prompt lengths in tokens")
    p.add_argument("--tokens", type=int, default=48, help="tokens to generate per run")
    p.add_argument("--repeats", type=int, default=5, help="repeats (runners interleaved)")
    p.add_argument(
        "--top-logprobs", type=int, default=5, help="alternatives per event (engine default 5)"
    )
    p.add_argument("--ablations", nargs="*", choices=list(ABLATIONS), default=None,
                   help="add runners with a remedy undone (all, or those named)")  # fmt: skip
    p.add_argument("--breakdown", action="store_true", help="add the decode-only model loops")
    p.add_argument("--replot", type=Path, help="redraw the PNG from a saved JSON, no run")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--png", type=Path, default=PLOT)
    args = p.parse_args()
    if args.replot:
        plot(json.loads(args.replot.read_text()), args.png)
        print(f"wrote {args.png}")
        return

    lm = load(args.model)
    ref = to_mlx_lm(lm)
    info = runtime_info()
    lengths = [int(x) for x in args.lengths.split(",")]
    rows: list[dict[str, Any]] = []
    per_length: dict[str, dict[str, Any]] = {}
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    for target in lengths:
        ids = prompt_ids(lm, target)
        length_rows, ratios = measure_length(lm, ref, ids, args)
        rows += [{**r, "target": target} for r in length_rows]
        per_length[str(target)] = ratios
        print(f"[{len(ids)} prompt tokens] " + ", ".join(
            f"{k}: {v['median']:.2f} [{v['spread'][0]:.2f}-{v['spread'][1]:.2f}]"
            for k, v in ratios.items() if isinstance(v, dict)
        ) + f"; load {ratios['load_avg_1min']}", flush=True)  # fmt: skip

    def headline(num: str) -> dict[str, float]:
        return {t: r[f"{num} / mlx-lm greedy"]["median"] for t, r in per_length.items()}

    result = {
        "model": lm.info.name,
        "compute_dtype": lm.info.compute_dtype,
        "device": info.device,
        "blas": info.blas,
        "compiled": info.compile_note,
        "blas_threads": {k: os.environ.get(k) for k in THREAD_VARS},
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "started": started,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_avg_at_end": os.getloadavg(),
        "tokens": args.tokens,
        "top_logprobs": args.top_logprobs,
        "repeats": args.repeats,
        "rows": rows,
        "ratios": per_length,
        "headline": {
            "entropix_over_mlx_lm_decode": statistics.mean(headline("entropix").values()),
            "per_length": headline("entropix"),
            "greedy_engine_over_mlx_lm_decode": headline("greedy"),
            "normal_over_mlx_lm_decode": headline("normal"),
        },
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "memory_note": "peak_mib: mx.get_peak_memory() per run; ru_maxrss: the whole process",
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.png)
    print(f"wrote {args.out} and {args.png}")


def print_table(result: dict[str, Any]) -> None:
    print(
        f"\n{'runner':<38}{'prompt':>7}{'TTFT s':>8}{'decode/s':>9}{'  [min-max]':<14}"
        f"{'peak MiB':>9}"
    )
    for r in result["rows"]:
        lo, hi = r["decode_tok_s_spread"] if "decode_tok_s_spread" in r else (0, 0)
        ttft = f"{r['ttft_s']:>8.3f}" if "ttft_s" in r else f"{'':>8}"
        peak = f"{r['peak_mib']:>9.0f}" if "peak_mib" in r else ""
        print(f"{r['runner']:<38}{r['prompt_tokens']:>7}{ttft}{r['decode_tok_s']:>9.1f}"
              f"  [{lo:.1f}-{hi:.1f}]{'':<3}{peak}")  # fmt: skip
    h = result["headline"]
    print("\nentropix / mlx-lm greedy decode (median of paired ratios): "
          + ", ".join(f"{t} tok: {v:.2f}" for t, v in h["per_length"].items())
          + "; greedy engine: "
          + ", ".join(f"{t} tok: {v:.2f}" for t, v in h["greedy_engine_over_mlx_lm_decode"].items())
          + " (targets 0.95 and 1.0)")  # fmt: skip
    print(f"process ru_maxrss: {result['ru_maxrss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
