"""A decode step of ``BatchDecoder`` before and after ``observe_requests`` (issue 20), in one
process: the old ``_decode`` (an ``observe`` per request, as of 86754c2) and the current one
alternate in blocks of 4 steps on the same decoder (they give the same bits), so a neighbour's
load hits both alike. Per number of requests (1, 2, 4, 8; entropix, the load test's prompts):
the median ms per step of each. MKL's mode comes from the environment (one process per mode):

    MKL_CBWR=AUTO,STRICT uv run benchmarks/decode_step_ab.py   # ~1.5 min on a 2-core CPU
    uv run benchmarks/decode_step_ab.py                        # default MKL
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)
from mlx_entropix.engine.batch import BatchDecoder  # noqa: E402
from mlx_entropix.engine.generate import prepare_prompt  # noqa: E402
from mlx_entropix.io.load import load  # noqa: E402
from mlx_entropix.models.llama import run_steps  # noqa: E402
from mlx_entropix.uncertainty.step import Step, observe, sample_rows  # noqa: E402

import mlx.core as mx  # noqa: E402

PROMPTS: list[str] = importlib.import_module("load_client").PROMPTS


def old_decode(self: BatchDecoder, reqs: list) -> dict:
    """``BatchDecoder._decode`` before ``observe_requests``: two compiled calls per request."""
    if not reqs:
        return {}
    on, shared = self._compiled(), self.shared
    order = mx.array([s for r in reqs for s in r.slots])
    tokens = mx.zeros((shared.slots,), dtype=mx.int32)
    tokens[order] = mx.concatenate([r.current.token for r in reqs]).astype(mx.int32)
    keys = {r: shared.lengths[r.slots[0]] + 1 for r in reqs}
    logits, scores = run_steps(self.lm.model.step_shared(tokens, shared))
    observed = [observe(logits[mx.array(r.slots)], scores[mx.array(r.slots), :, : keys[r]], on)
                for r in reqs]  # fmt: skip
    forward = [mx.concatenate(list(parts)) for parts in zip(*observed, strict=True)]
    can = mx.concatenate([r.current.can_clarify for r in reqs])
    plans = [p for r in reqs for p in r.plans]
    step = sample_rows(*forward, can, plans, [r.index + 1 for r in reqs for _ in r.plans], on)
    out, start = {}, 0
    for req in reqs:
        rows = slice(start, start + len(req.plans))
        out[req] = Step(step.token[rows], step.can_clarify[rows], step.packed[rows])
        start = rows.stop
    mx.async_eval([a for rows in out.values() for a in rows.arrays()])
    self.steps += 1
    return out


def main(steps: int = 30) -> None:
    new = BatchDecoder._decode
    lm = load(None)
    res: dict = {"MKL_CBWR": os.environ.get("MKL_CBWR"), "load": [os.getloadavg()[0]]}
    for n in (1, 2, 4, 8):
        d = BatchDecoder(lm)
        reqs = [d.submit(prepare_prompt(lm, PROMPTS[i % len(PROMPTS)]), [("entropix", 100 + i)],
                         max_tokens=10_000) for i in range(n)]  # fmt: skip
        while any(r.current is None for r in reqs):
            d.tick()
            for r in reqs:
                r.events.clear()
        times: dict[str, list[float]] = {"before": [], "after": []}
        for block in range(2 * (steps // 3 + 1)):  # blocks of 4 steps, the first not counted
            name, fn = (("before", old_decode), ("after", new))[block % 2]
            BatchDecoder._decode = fn  # type: ignore[method-assign]
            for j in range(4):
                t = time.perf_counter()
                d.tick()
                dt = time.perf_counter() - t
                for r in reqs:
                    r.events.clear()
                if j and block >= 2:
                    times[name].append(dt * 1000)
        for name, ts in times.items():
            res[f"{name} x{n} ms/step"] = statistics.median(ts)
        res["load"].append(os.getloadavg()[0])
    BatchDecoder._decode = new  # type: ignore[method-assign]
    print(json.dumps(res))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
