"""What does entropix cost? Decode/prefill speed, time to first token and memory, per mode.

Same device, weights and prompts for every runner:
  entropix, normal, greedy   our engine (``mlx_entropix.generate.generate``), full events
  mlx-lm greedy              mlx-lm's ``generate_step`` (argmax) on mlx-lm's own Llama holding
                             the same weights (``load.to_mlx_lm``), fed the same token ids
at prompt lengths of about 50, 500 and 2000 tokens (a chat prompt asking for a long story).

Definitions (identical for every runner):
  TTFT          seconds from the call until the first token is available (prefill + 1 step)
  prefill tok/s prompt tokens / TTFT
  decode tok/s  (tokens - 1) / (time of last token - time of first token)
  peak MiB      ``mx.get_peak_memory()`` (MLX allocator: weights + KV cache + activations),
                reset before each run; ``ru_maxrss`` (whole process, never decreases) is
                reported once at the end.
Runners are interleaved within each repeat (so a busy neighbour slows all of them alike) and
the best repeat is kept. Two decode-only loops of our model (argmax only; + metrics and the
logits copied to the host) split the engine's cost into model, metrics/transfer and host work.
Headline: entropix decode tok/s / mlx-lm greedy decode tok/s.

    uv run benchmarks/speed.py                        # ~3-6 min on a 2-core CPU
    uv run benchmarks/speed.py --lengths 50 --tokens 32 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.eval.reference_model import to_mlx_lm
from mlx_entropix.generate import generate  # noqa: E402
from mlx_entropix.io.load import LoadedModel, load  # noqa: E402
from mlx_entropix.runtime.device import runtime_info  # noqa: E402

import mlx.core as mx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "speed.json"
PLOT = ROOT / "images" / "speed.png"
RUNNERS = ("entropix", "normal", "greedy", "mlx-lm greedy")
TASK = "\n\nUsing the notes above, write a long, detailed story about a trip around the world."
SEED = 1234
# Decode-only loops that isolate where the engine's time goes (see ``device_loop``).
BREAKDOWN = {"our model, argmax only": False, "our model + metrics + logits to host": True}


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


def run_engine(
    lm: LoadedModel, ids: list[int], mode: str, tokens: int, top_logprobs: int = 5
) -> dict[str, Any]:
    mx.reset_peak_memory()
    start = time.perf_counter()
    first = last = start
    n = 0
    done = None
    events = generate(lm, ids, mode=mode, max_tokens=tokens, seed=SEED, top_logprobs=top_logprobs)
    for ev in events:
        if ev.type == "token":
            last = time.perf_counter()
            if n == 0:
                first = last
            n += 1
        else:
            done = ev
    return _row(len(ids), n, start, first, last, extra={"states": done.state_counts})


def run_mlx_lm(ref: Any, ids: list[int], tokens: int) -> dict[str, Any]:
    from mlx_lm.generate import generate_step

    mx.reset_peak_memory()
    start = time.perf_counter()
    first = last = start
    n = 0
    for _ in generate_step(mx.array(ids), ref, max_tokens=tokens):  # yields host ints
        last = time.perf_counter()
        if n == 0:
            first = last
        n += 1
    return _row(len(ids), n, start, first, last)


def _row(prompt: int, n: int, start: float, first: float, last: float, extra=None) -> dict:
    ttft = first - start
    return {
        "prompt_tokens": prompt,
        "tokens": n,
        "ttft_s": ttft,
        "prefill_tok_s": prompt / ttft if ttft > 0 else 0.0,
        "decode_tok_s": (n - 1) / (last - first) if n > 1 and last > first else 0.0,
        "peak_mib": mx.get_peak_memory() / 2**20,
        **(extra or {}),
    }


def device_loop(lm: LoadedModel, ids: list[int], tokens: int, metrics: bool) -> float:
    """Decode tok/s of our model alone: argmax on the device, one host sync per token.

    ``metrics``: also compute the six entropix metrics and bring logits + metrics to the host
    each step, as the engine does; without, only the token id comes back (mlx-lm's loop).
    The gaps engine greedy -> this (metrics) -> this (no metrics) -> mlx-lm greedy split the
    engine's cost into host work, metrics + logits transfer, and the model itself.
    """
    from mlx_entropix.metrics import compute_metrics

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
    colours = {
        "entropix": "#0072B2",
        "normal": "#56B4E9",
        "greedy": "#666666",
        "mlx-lm greedy": "#D55E00",
    }
    panels = [
        ("decode_tok_s", "decode tokens/s", "Decode speed"),
        ("ttft_s", "seconds", "Time to first token"),
        ("peak_mib", "MiB (mx.get_peak_memory)", "Peak MLX memory"),
    ]
    extra = {name: "#999999" for name in BREAKDOWN}
    for ax, (key, ylabel, title) in zip(axes, panels, strict=True):
        for runner in RUNNERS + (tuple(BREAKDOWN) if key == "decode_tok_s" else ()):
            pts = sorted((r["prompt_tokens"], r[key]) for r in rows if r["runner"] == runner)
            if pts:
                xs, ys = zip(*pts, strict=True)
                style = "--" if runner.startswith("mlx-lm") else "-"
                if runner in extra:  # the decode-only loops: thin dotted references
                    style = ":" if BREAKDOWN[runner] else "-."
                colour = colours.get(runner, extra.get(runner))
                ax.plot(xs, ys, style, marker="o", label=runner, color=colour)
        ax.set_xscale("log")
        ax.set_xlabel("prompt tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_ylim(bottom=0)
    axes[2].set_ylim(bottom=0)
    ratio = result["headline"]["entropix_over_mlx_lm_decode"]
    fig.suptitle(
        f"{result['model']} on {result['device']} ({result['cpus']} CPUs, BLAS {result['blas']}): "
        f"entropix / mlx-lm greedy decode = {ratio:.2f}x (mean over prompt lengths)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="model path (default: the embedded SmolLM2-135M)")
    p.add_argument("--lengths", default="50,500,2000", help="prompt lengths in tokens")
    p.add_argument("--tokens", type=int, default=48, help="tokens to generate per run")
    p.add_argument("--repeats", type=int, default=2, help="best of N (runners interleaved)")
    p.add_argument(
        "--top-logprobs", type=int, default=5, help="alternatives per event (engine default 5)"
    )
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
    rows = []
    for target in lengths:
        ids = prompt_ids(lm, target)
        run_engine(lm, ids[:64], "greedy", 4)  # warm-up (first-call overheads)
        run_mlx_lm(ref, ids[:64], 4)
        best: dict[str, dict[str, Any]] = {}
        for _ in range(args.repeats):
            for runner in RUNNERS:
                if runner == "mlx-lm greedy":
                    r = run_mlx_lm(ref, ids, args.tokens)
                else:
                    r = run_engine(lm, ids, runner, args.tokens, args.top_logprobs)
                if runner not in best or r["decode_tok_s"] > best[runner]["decode_tok_s"]:
                    best[runner] = r
        for runner in RUNNERS:
            rows.append({"runner": runner, "target": target, **best[runner]})
        for name, with_metrics in BREAKDOWN.items():
            rate = max(device_loop(lm, ids, args.tokens, with_metrics) for _ in range(args.repeats))
            rows.append({"runner": name, "target": target, "prompt_tokens": len(ids),
                         "decode_tok_s": rate})  # fmt: skip
        ratio = best["entropix"]["decode_tok_s"] / best["mlx-lm greedy"]["decode_tok_s"]
        print(f"[{len(ids)} prompt tokens] entropix / mlx-lm decode = {ratio:.2f}", flush=True)

    by_len = {
        t: {r["runner"]: r for r in rows if r["target"] == t and "ttft_s" in r} for t in lengths
    }
    ratios = {
        str(t): by_len[t]["entropix"]["decode_tok_s"] / by_len[t]["mlx-lm greedy"]["decode_tok_s"]
        for t in lengths
    }
    greedy_ratios = {
        str(t): by_len[t]["greedy"]["decode_tok_s"] / by_len[t]["mlx-lm greedy"]["decode_tok_s"]
        for t in lengths
    }
    result = {
        "model": lm.info.name,
        "compute_dtype": lm.info.compute_dtype,
        "device": info.device,
        "blas": info.blas,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_at_end": os.getloadavg(),
        "tokens": args.tokens,
        "top_logprobs": args.top_logprobs,
        "repeats": args.repeats,
        "rows": rows,
        "headline": {
            "entropix_over_mlx_lm_decode": sum(ratios.values()) / len(ratios),
            "per_length": ratios,
            "greedy_engine_over_mlx_lm_decode": greedy_ratios,
        },
        "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "memory_note": "peak_mib = mx.get_peak_memory() per run; ru_maxrss = whole process (KiB "
        "on Linux), includes Python, numpy, tokenizer and both models",
    }

    print(
        f"\n{'runner':<38}{'prompt':>8}{'tokens':>8}{'TTFT s':>9}{'prefill/s':>11}"
        f"{'decode/s':>10}{'peak MiB':>10}"
    )
    for r in rows:
        if "ttft_s" not in r:
            print(f"{r['runner']:<38}{r['prompt_tokens']:>8}{'':>8}{'':>9}{'':>11}"
                  f"{r['decode_tok_s']:>10.1f}")  # fmt: skip
            continue
        print(
            f"{r['runner']:<38}{r['prompt_tokens']:>8}{r['tokens']:>8}{r['ttft_s']:>9.3f}"
            f"{r['prefill_tok_s']:>11.0f}{r['decode_tok_s']:>10.1f}{r['peak_mib']:>10.0f}"
        )
    print(
        "\nentropix / mlx-lm greedy decode: "
        + ", ".join(f"{t} tok: {v:.2f}" for t, v in ratios.items())
        + f" (mean {result['headline']['entropix_over_mlx_lm_decode']:.2f}; target >= 0.9)"
    )
    print(f"process ru_maxrss: {result['ru_maxrss_mib']:.0f} MiB")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.png)
    print(f"wrote {args.out} and {args.png}")


if __name__ == "__main__":
    main()
