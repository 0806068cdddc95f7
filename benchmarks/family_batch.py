"""Continuous batching of an mlx-lm family model (``models/families.py`` ``BatchedFamilyModel``):
4 concurrent requests against the same requests served alone, in one process.

The embedded SmolLM2-135M's weights (fp32) and tokenizer are written to a temporary directory
as a ``mistral`` checkpoint (mlx-lm runs it with its own Llama class; traditional RoPE for the
GGUF's q/k layout) and loaded as any family checkpoint is: real text, our Llama's size.
Per round: request 0 alone, then the 4 requests submitted at once and pulled
round-robin (as the server's worker does), then each of the 4 alone; entropix, 32 tokens,
seeds 100 + i; the same for the embedded model on our own Llama, in turn. Reports tokens/s
(all tokens / wall time) and how many streams equal the same request served alone (tokens).

    uv run benchmarks/family_batch.py                # ~4 min on a 2-core CPU
    uv run benchmarks/family_batch.py --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "family_batch.json"
PROMPTS: list[str] = importlib.import_module("load_client").PROMPTS


def checkpoint(root: Path) -> Path:
    """The embedded model as an mlx-lm family checkpoint (``model_type`` mistral)."""
    import dataclasses

    from mlx_entropix.io.load import load

    import mlx.core as mx
    from mlx.utils import tree_flatten

    lm = load(None)
    config = {**dataclasses.asdict(lm.model.args), "model_type": "mistral"}
    config.pop("extra", None)
    mx.save_safetensors(str(root / "model.safetensors"), dict(tree_flatten(lm.model.parameters())))
    (root / "config.json").write_text(json.dumps(config))
    lm.tokenizer.hf.save_pretrained(str(root))
    return root


def serve(
    decoder, lm, prompts: list[str], max_tokens: int, first: int = 0
) -> tuple[float, list[list[int]]]:
    """Submit ``prompts`` (requests ``first``, ``first`` + 1, ...: seed 100 + their number) at
    once, pull them round-robin: (wall time, each stream's ids)."""
    from mlx_entropix.engine.generate import prepare_prompt

    t0 = time.perf_counter()
    pulls, out = {}, {}
    for i, p in enumerate(prompts):
        ids = prepare_prompt(lm, p, max_tokens=max_tokens)
        req = decoder.submit(ids, [("entropix", 100 + first + i)], max_tokens=max_tokens)
        pulls[i], out[i] = decoder.pull(req), []
    while pulls:
        for i, pull in list(pulls.items()):
            item = next(pull, "end")
            if item == "end":
                del pulls[i]
            elif item is not None and item[1].type == "token":
                out[i].append(item[1].id)
    return time.perf_counter() - t0, [out[i] for i in range(len(prompts))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.io.load import load
    from mlx_entropix.models.families import BatchedFamilyModel
    from mlx_entropix.runtime.blas import batch_invariant

    invariant = batch_invariant()
    with tempfile.TemporaryDirectory() as tmp:
        family = load(str(checkpoint(Path(tmp))))
    assert isinstance(family.model, BatchedFamilyModel)
    prompts = PROMPTS[: args.requests]
    models = {"family (mlx-lm)": family, "ours (models/llama.py)": load(None)}
    decoders = {name: BatchDecoder(lm) for name, lm in models.items()}
    for name, lm in models.items():
        serve(decoders[name], lm, prompts[:1], 4)  # warm-up (compiles), not timed
    rounds = []
    for _ in range(args.rounds):
        for name, lm in models.items():  # the same weights, the two model classes, in turn
            decoder = decoders[name]
            t_one, _ = serve(decoder, lm, prompts[:1], args.max_tokens)
            t_all, together = serve(decoder, lm, prompts, args.max_tokens)
            alone = [serve(decoder, lm, [p], args.max_tokens, i) for i, p in enumerate(prompts)]
            n_all = sum(len(ids) for ids in together)
            row = {
                "model": name,
                "single_tok_s": args.max_tokens / t_one,
                "concurrent_tok_s": n_all / t_all,
                "one_after_another_tok_s": n_all / sum(t for t, _ in alone),
                "identical_to_alone": sum(
                    a[1][0] == b for a, b in zip(alone, together, strict=True)
                ),
            }
            row["ratio"] = row["concurrent_tok_s"] / row["single_tok_s"]
            rounds.append(row)
            print(json.dumps(row), flush=True)
    summary = {
        name: {k: statistics.median(r[k] for r in rounds if r["model"] == name)
               for k in rounds[0] if k != "model"}
        for name in models
    }  # fmt: skip
    report = {
        "what": "mlx-lm family model (the embedded SmolLM2 as mistral) in the shared batch",
        "args": vars(args),
        "batch_invariant": invariant,
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "goal": f"{args.requests} concurrent >= 2.5x one alone, each stream equal to itself alone",
        "rounds": rounds,
    }
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
