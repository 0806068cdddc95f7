"""Model speed: our Llama vs mlx-lm's on the same weights and device, with and without the BLAS.

Greedy decoding only (no sampler), so this measures the forward pass: load time, prefill tok/s
and decode tok/s. Each BLAS setting runs in its own process because the preload must happen
before mlx is imported.

    uv run benchmarks/model_speed.py                # all BLAS settings, table + JSON
    uv run benchmarks/model_speed.py --blas mkl     # one setting
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "model_speed.json"
PROMPT = "Explain, step by step, why the sky is blue and sunsets are red. " * 40


def measure(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import mlx_entropix  # noqa: F401  (BLAS preload first)
    from mlx_entropix.eval.reference_model import to_mlx_lm
    from mlx_entropix.io.load import load
    from mlx_entropix.runtime.device import runtime_info

    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models.cache import make_prompt_cache

    if args.setting in ("mkl", "openblas") and runtime_info().blas == "bundled":
        return {"blas": "bundled"}  # not installed: the parent skips it, no slow run

    t0 = time.perf_counter()
    lm = load(args.model)
    load_s = time.perf_counter() - t0
    ref = to_mlx_lm(lm)
    ids = lm.tokenizer.encode(PROMPT)[: args.prompt_tokens]
    prompt = mx.array(ids)

    def ours_prefill() -> float:
        cache = lm.model.make_cache()
        start = time.perf_counter()
        logits, scores = lm.model(prompt[None], cache)
        mx.eval(logits, scores)
        return len(ids) / (time.perf_counter() - start)

    def ref_prefill() -> float:
        cache = make_prompt_cache(ref)
        start = time.perf_counter()
        mx.eval(ref(prompt[None], cache=cache))
        return len(ids) / (time.perf_counter() - start)

    def ours_decode() -> float:
        cache = lm.model.make_cache()
        logits, _ = lm.model(prompt[None], cache)
        y = mx.argmax(logits[:, -1], axis=-1)
        mx.eval(y)
        start = time.perf_counter()
        for _ in range(args.tokens):
            logits, scores = lm.model(y[None], cache)
            nxt = mx.argmax(logits[:, -1], axis=-1)
            mx.async_eval(nxt, scores)
            y.item()  # the host sync a real loop makes for the previous token
            y = nxt
        y.item()
        return args.tokens / (time.perf_counter() - start)

    def ref_decode() -> float:
        steps = generate_step(prompt, ref, max_tokens=args.tokens + 1)
        next(steps)  # the first token comes out of the prefill
        start = time.perf_counter()
        n = sum(1 for _ in steps)
        return n / (time.perf_counter() - start)

    ours_prefill(), ref_prefill()  # warm-up
    row = {
        "blas": runtime_info().blas,
        "load_s": round(load_s, 3),
        "prompt_tokens": len(ids),
        "decode_tokens": args.tokens,
        "ours_prefill_tok_s": round(max(ours_prefill() for _ in range(2)), 1),
        "mlx_lm_prefill_tok_s": round(max(ref_prefill() for _ in range(2)), 1),
        "ours_decode_tok_s": round(max(ours_decode() for _ in range(args.repeats)), 2),
        "mlx_lm_decode_tok_s": round(max(ref_decode() for _ in range(args.repeats)), 2),
        "compute_dtype": lm.info.compute_dtype,
        "device": runtime_info().device,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blas", help="one BLAS setting (auto|mkl|openblas|none); default all")
    parser.add_argument("--model", default=None, help="model path (default: embedded)")
    parser.add_argument("--tokens", type=int, default=100, help="decode tokens per run")
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="best of N decode runs")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setting", default="auto", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    settings = [args.blas] if args.blas else ["mkl", "openblas", "none"]
    rows = []
    for blas in settings:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--setting",
            blas,
            "--tokens",
            str(args.tokens),
            "--prompt-tokens",
            str(args.prompt_tokens),
            "--repeats",
            str(args.repeats),
        ]
        if args.model:
            cmd += ["--model", args.model]
        env = {**os.environ, "MLX_ENTROPIX_BLAS": blas}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"[{blas}] failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        if blas != "none" and row["blas"] == "bundled":
            print(f"[{blas}] not available here, skipped", file=sys.stderr)
            continue
        rows.append({"setting": blas, **row})

    header = (
        "BLAS",
        "load s",
        "prefill ours",
        "prefill mlx-lm",
        "decode ours",
        "decode mlx-lm",
        "ratio",
    )
    print(f"{header[0]:<10}" + "".join(f"{h:>15}" for h in header[1:]))
    for r in rows:
        ratio = r["ours_decode_tok_s"] / r["mlx_lm_decode_tok_s"]
        print(
            f"{r['blas']:<10}{r['load_s']:>15.2f}{r['ours_prefill_tok_s']:>15.1f}"
            f"{r['mlx_lm_prefill_tok_s']:>15.1f}{r['ours_decode_tok_s']:>15.2f}"
            f"{r['mlx_lm_decode_tok_s']:>15.2f}{ratio:>15.2f}"
        )
    print("(prefill and decode in tokens/s; decode is greedy, best of repeats)")
    if not rows:
        print(f"nothing measured: {RESULTS} left as it was", file=sys.stderr)
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "rows": rows}, indent=2)
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
