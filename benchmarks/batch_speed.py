"""What does batching cost? Compare mode as one batch vs one stream, and a decode step of k
rows (fork branches) vs one row, on the embedded model.

- compare: ``generate_batch(modes=[entropix, normal])`` vs ``generate(mode=entropix)`` (and
  vs the two runs one after the other, as compare mode ran before batching), same prompt and
  seed, seconds per step (wall time / tokens of the longer row), prefill excluded.
- step: the engine's decode step alone (forward + metrics + decision/draw + the packed values
  read on the host), runners alternating step by step (median): compare's two rows vs one
  entropix row, and greedy k rows (a fork's branches) vs 1 row.
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
from mlx_entropix.engine.generate import generate, generate_batch  # noqa: E402
from mlx_entropix.engine.request import row_plan  # noqa: E402
from mlx_entropix.io.load import LoadedModel, load  # noqa: E402
from mlx_entropix.runtime.device import runtime_info  # noqa: E402
from mlx_entropix.uncertainty.step import observe, sample_rows  # noqa: E402

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


class Stepper:
    """The engine's decode step for some rows (forward of all rows, then each row's decision
    and draw under its own key, one host read), on its own copy of the prompt's cache."""

    def __init__(self, lm: LoadedModel, modes: list[str]):
        self.lm = lm
        vocab = lm.info.vocab_size
        # the engine's plans: rows that agree but for the seed (greedy branches) share one call
        self.plans = [row_plan(lm.default_config, m, SEED, vocab, 5, None) for m in modes]
        ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
        self.cache = lm.model.make_cache()
        logits, _ = lm.model(mx.array(ids)[None], self.cache, last_only=True)
        mx.eval(logits, [c.state for c in self.cache])
        for c in self.cache:  # a copy of the prompt's keys per row
            c.keys, c.values = (mx.repeat(a, len(modes), axis=0) for a in (c.keys, c.values))
        token = mx.argmax(logits[:, -1], axis=-1).astype(mx.int32)
        self.token = mx.broadcast_to(token, (len(modes),))
        self.can = mx.zeros((len(modes),), dtype=mx.bool_)
        self.index = 0

    def __call__(self) -> float:
        t = time.perf_counter()
        logits, scores = self.lm.model(self.token.reshape(-1, 1), self.cache)
        fwd = observe(logits, scores, self.lm.compile_steps)
        step = sample_rows(*fwd, self.can, self.plans, self.index, self.lm.compile_steps)
        step.packed.tolist()
        self.token, self.index = step.token, self.index + 1
        return time.perf_counter() - t


def run_steps(lm: LoadedModel, steps: int, rows: list[int]) -> dict[str, float]:
    """Median seconds per step of each runner; runners alternate step by step, so a busy
    neighbour slows them alike."""
    runners = {
        "entropix, one row": Stepper(lm, ["entropix"]),
        "compare (entropix + normal rows)": Stepper(lm, ["entropix", "normal"]),
        **{f"greedy, {k} row(s)": Stepper(lm, ["greedy"] * k) for k in rows},
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(steps):
        for name, runner in runners.items():
            times[name].append(runner())
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=32, help="tokens per compare run")
    p.add_argument("--steps", type=int, default=24, help="decode steps per step runner")
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 5])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    lm = load(None)
    run_compare(lm, 4)  # warm-up
    compare: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, value in run_compare(lm, args.tokens).items():
            compare[name] = min(compare.get(name, float("inf")), value)
    step = run_steps(lm, args.steps, args.rows)
    base = compare["one stream (entropix)"]
    one, greedy1 = step["entropix, one row"], step["greedy, 1 row(s)"]
    ratios = {
        "compare_vs_one_stream (generate)": compare["compare as one batch"] / base,
        "compare_vs_two_streams (generate)": compare["compare as one batch"]
        / compare["two streams one after the other"],
        "compare_vs_one_row (step)": step["compare (entropix + normal rows)"] / one,
        **{
            f"step_{k}_rows_vs_1 (greedy)": step[f"greedy, {k} row(s)"] / greedy1 for k in args.rows
        },
    }
    print(f"{lm.info.name}, {runtime_info().device}")
    print(f"{'generate, per step (best of ' + str(args.repeats) + ')':<40} {'ms':>8} {'x one':>6}")
    for name, value in compare.items():
        print(f"{name:<40} {1e3 * value:8.1f} {value / base:6.2f}")
    print(f"{'decode step alone (median, interleaved)':<40} {'ms':>8} {'x one':>6}")
    for name, value in step.items():
        ref = one if name.startswith(("entropix", "compare")) else greedy1
        print(f"{name:<40} {1e3 * value:8.1f} {value / ref:6.2f}")
    print("targets: compare <= 1.3x one stream; 5-row step <= 2x a one-row step")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "run": {**vars(args), "model": lm.info.name, "device": runtime_info().device},
                "compare_ms_per_step": {k: 1e3 * v for k, v in compare.items()},
                "step_ms_median": {k: 1e3 * v for k, v in step.items()},
                "ratios": ratios,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
