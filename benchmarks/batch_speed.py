"""What does batching cost? Compare mode as one batch vs one stream, and a decode step of k
rows (fork branches) vs one row, on the embedded model.

- compare: ``generate_batch(modes=[entropix, normal])`` vs ``generate(mode=entropix)`` (and
  vs the two runs one after the other, as compare mode ran before batching), same prompt and
  seed, seconds per step (wall time / tokens of the longer row), prefill excluded.
- step: one decode step (forward + metrics + greedy pick + the packed values read on the host,
  what a fork branch step does) with k rows vs 1 row, from the same prompt's cache.
Runners are interleaved within each repeat and the best repeat is kept. Targets (issue 12):
compare <= 1.3x one stream; k=5 step <= 2x a one-row step.

    uv run benchmarks/batch_speed.py                       # ~1-2 min on a 2-core CPU
    uv run benchmarks/batch_speed.py --tokens 16 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.fork import tile_cache  # noqa: E402
from mlx_entropix.generate import _forward, _step, generate, generate_batch  # noqa: E402
from mlx_entropix.io.load import LoadedModel, load  # noqa: E402
from mlx_entropix.runtime.device import runtime_info  # noqa: E402
from mlx_entropix.sampler import step_key  # noqa: E402

import mlx.core as mx  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "batch_speed.json"
PROMPT = "Write a long, detailed story about a trip around the world."
SEED = 1234


def per_step(events: list, t0: float) -> float:
    """Seconds per decode step after the first token, over the longest row."""
    tokens = [e for e in events if e.type == "token"]
    n = max(sum(1 for e in tokens if e.mode == m) for m in {e.mode for e in tokens})
    first = min(e.elapsed_s for e in tokens)
    last = max(e.elapsed_s for e in tokens)
    return (last - first) / max(n - 1, 1)


def run_compare(lm: LoadedModel, tokens: int) -> dict[str, float]:
    common = {"max_tokens": tokens, "top_logprobs": 0}
    one = list(generate(lm, PROMPT, mode="entropix", seed=SEED, **common))
    other = list(generate(lm, PROMPT, mode="normal", seed=SEED, **common))
    both = list(generate_batch(lm, PROMPT, modes=["entropix", "normal"], seeds=[SEED] * 2,
                               **common))  # fmt: skip
    t = time.perf_counter()
    return {
        "one stream (entropix)": per_step(one, t),
        "two streams one after the other": per_step(one, t) + per_step(other, t),
        "compare as one batch": per_step(both, t),
    }


def run_step(lm: LoadedModel, rows: int, steps: int) -> float:
    """Seconds per greedy decode step of ``rows`` rows (packed values read every step)."""
    cfg = lm.default_config
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    cache = lm.model.make_cache()
    fwd = _forward(lm, ids, cache)
    mx.eval(fwd, [c.state for c in cache])
    if rows > 1:
        tile_cache(cache, rows)
    token = mx.argmax(fwd[0], axis=-1).astype(mx.int32)
    token = mx.broadcast_to(token, (rows,))
    can = mx.zeros((rows,), dtype=mx.bool_)
    key = step_key(0, 0)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        s = _step(*_forward(lm, token, cache), can, key, cfg, "greedy", 5, 1, 5, None)
        s.packed.tolist()
        times.append(time.perf_counter() - t)
        token = s.token
    times.sort()
    return times[len(times) // 2]  # the median step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=32, help="tokens per compare run")
    p.add_argument("--steps", type=int, default=16, help="decode steps per row-count")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    lm = load(None)
    run_compare(lm, 4)  # warm-up
    compare: dict[str, float] = {}
    step: dict[int, float] = {}
    for _ in range(args.repeats):
        for name, value in run_compare(lm, args.tokens).items():
            compare[name] = min(compare.get(name, float("inf")), value)
        for rows in args.rows:
            step[rows] = min(step.get(rows, float("inf")), run_step(lm, rows, args.steps))
    base = compare["one stream (entropix)"]
    ratios = {
        "compare_vs_one_stream": compare["compare as one batch"] / base,
        "compare_vs_two_streams": compare["compare as one batch"]
        / compare["two streams one after the other"],
        **{f"step_{k}_rows_vs_1": step[k] / step[1] for k in args.rows if k != 1},
    }
    print(f"{lm.info.name}, {runtime_info().device}, best of {args.repeats}")
    print(f"{'runner':<36} {'ms/step':>8} {'x one':>6}")
    for name, value in compare.items():
        print(f"{name:<36} {1e3 * value:8.1f} {value / base:6.2f}")
    for rows, value in step.items():
        print(f"{f'decode step, {rows} row(s)':<36} {1e3 * value:8.1f} {value / step[1]:6.2f}")
    print("targets: compare <= 1.3x one stream; 5-row step <= 2x a one-row step")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "run": {**vars(args), "model": lm.info.name, "device": runtime_info().device},
                "compare_ms_per_step": {k: 1e3 * v for k, v in compare.items()},
                "step_ms": {str(k): 1e3 * v for k, v in step.items()},
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
