"""Run by tests/test_distributed.py under ``mlx.launch``: the embedded model split over the
ranks, greedy then seeded entropix; every rank writes what it generated to ``OUT.rank<r>``.

    python tests/_dist_run.py OUT '{"prompt": ..., "max_tokens": ..., "seed": ..., ...}'
"""

from __future__ import annotations

import json
import sys

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate
from mlx_entropix.io.load import load
from mlx_entropix.runtime.distributed import init_group

import mlx.core as mx


def weights(layer) -> dict[str, dict]:
    """What this rank holds of the first layer's projections: shape and sum of each weight."""
    found = {}
    for part in ("self_attn", "mlp"):
        for name, module in getattr(layer, part).children().items():
            weight = getattr(module, "weight", None)
            if name.endswith("_proj") and weight is not None:
                total = weight.astype(mx.float32).sum().item()
                found[f"{part}.{name}"] = {"shape": list(weight.shape), "sum": total}
    return found


def main() -> None:
    out, spec = sys.argv[1], json.loads(sys.argv[2])
    group = init_group()
    lm = load(None, group=group, attention=spec.get("attention", "auto"))
    runs = []
    for mode in ("greedy", "entropix"):
        events = generate(lm, spec["prompt"], mode=mode, max_tokens=spec["max_tokens"],
                          seed=spec["seed"], top_logprobs=0)  # fmt: skip
        runs.append({"mode": mode, "events": [e.model_dump() for e in events]})
    plan = lm.info.sharding
    result = {"ranks": group.size() if group else 1, "plan": plan and plan.note, "runs": runs,
              "weights": weights(lm.model.layers[0])}  # fmt: skip
    rank = group.rank() if group else 0
    with open(f"{out}.rank{rank}", "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
