"""Continuous batching in-process (``batch.py``), without HTTP: how a decode step grows with the
number of requests in it, a burst's time to first token, and what MKL's batch-invariant mode
costs (``runtime.blas.batch_invariant``).

Each setting runs in its own process (MKL reads ``MKL_CBWR`` once), alternating between the
settings for ``--repeats`` rounds; per setting the median over rounds is kept:
- ``generate``: the CLI's engine, one stream, decode tok/s;
- ``decoder xB``: B requests (different prompts, entropix, seeds 100 + i) submitted at once;
  TTFT of the first and the last of them, then decode steps with all B rows: ms per step and
  aggregate tok/s.

    uv run benchmarks/continuous_batching.py                 # ~3 min on a 2-core CPU
    uv run benchmarks/continuous_batching.py --rows 1 8 --repeats 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "continuous_batching.json"
# the load test's prompts (the sibling module; benchmarks/ is no package)
PROMPTS: list[str] = importlib.import_module("load_client").PROMPTS
SETTINGS = {"batch-invariant": "AUTO,STRICT", "default MKL": None}


def measure(rows: list[int], steps: int, model: str | None = None) -> dict[str, float]:
    """One process: the figures of one setting (its MKL mode set by the parent)."""
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.engine.generate import generate, prepare_prompt
    from mlx_entropix.io.load import load

    lm = load(model)
    out: dict[str, float] = {}
    times = [e.elapsed_s for e in generate(lm, PROMPTS[0], mode="entropix", seed=100,
                                           max_tokens=steps + 1) if e.type == "token"]  # fmt: skip
    out["generate tok/s"] = (len(times) - 1) / (times[-1] - times[0])
    for n in rows:
        decoder = BatchDecoder(lm)
        t0 = time.perf_counter()
        reqs = [
            decoder.submit(prepare_prompt(lm, PROMPTS[i % len(PROMPTS)]), [("entropix", 100 + i)],
                           max_tokens=10_000)
            for i in range(n)
        ]  # fmt: skip
        first: dict[int, float] = {}
        while len(first) < n:
            decoder.tick()
            for i, r in enumerate(reqs):
                if i not in first and any(e.type == "token" for _, e in r.events):
                    first[i] = time.perf_counter() - t0
            for r in reqs:
                r.events.clear()
        t1 = time.perf_counter()
        for _ in range(steps):
            decoder.tick()
        dt = (time.perf_counter() - t1) / steps
        out[f"x{n} ms/step"] = dt * 1000
        out[f"x{n} tok/s"] = n / dt
        out[f"x{n} TTFT first"], out[f"x{n} TTFT last"] = min(first.values()), max(first.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--steps", type=int, default=24, help="decode steps measured per setting")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="model path (default: the embedded SmolLM2-135M)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.rows, args.steps, args.model)))
        return
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    loads = [os.getloadavg()[0]]
    for _ in range(args.repeats):
        for name, cbwr in SETTINGS.items():
            env = {k: v for k, v in os.environ.items() if k != "MKL_CBWR"}
            if cbwr:
                env["MKL_CBWR"] = cbwr
            cmd = [sys.executable, __file__, "--child", name, "--steps", str(args.steps),
                   "--rows", *map(str, args.rows)]  # fmt: skip
            cmd += ["--model", args.model] if args.model else []
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            loads.append(os.getloadavg()[0])
    keys = list(runs[next(iter(SETTINGS))][0])
    table = {n: {k: statistics.median(r[k] for r in runs[n]) for k in keys} for n in SETTINGS}
    print(
        f"median of {args.repeats} rounds; load average (1 min) {min(loads):.1f}-{max(loads):.1f}"
    )
    print(f"{'':22}" + "".join(f"{n:>18}" for n in SETTINGS))
    for k in keys:
        print(f"{k:22}" + "".join(f"{table[n][k]:18.2f}" for n in SETTINGS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                    "load_average": loads, "settings": settings,
                                    "median": table, "runs": runs}, indent=1))  # fmt: skip
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
