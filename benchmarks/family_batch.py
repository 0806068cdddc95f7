"""Continuous batching of an mlx-lm family model (``models/families.py`` ``FamilyModel``):
4 concurrent requests against the same requests served alone, in one process.

Models (``--models``, default all, in turn each round):
- ``family``: the embedded SmolLM2-135M's weights (fp32) and tokenizer written to a temporary
  directory as a ``mistral`` checkpoint (mlx-lm runs it with its own Llama class; traditional
  RoPE for the GGUF's q/k layout) and loaded as any family checkpoint is: real text;
- ``ours``: the embedded model on our own Llama (``models/llama.py``);
- ``tiny``: a random tiny ``mistral`` (the tests' shape: 2 layers of 64, vocabulary 256), where
  the per-step overhead dominates; prompts are token ids chosen so every stream runs its whole
  budget (the tokenizer's EOS, id 2, is in the random model's vocabulary);
- ``tiny-uncompiled``, ``family-uncompiled`` (not by default): the same with the family's
  decode pass uncompiled (the ablation of ``FamilyModel.decode_shared``'s ``mx.compile``);
- ``tiny-gemma3`` (not by default): a random tiny ``gemma3_text`` of the same shape, its first
  layer sliding (window 8, far shorter than the streams), so every step masks a window.
Per round: request 0 alone, then the 4 requests submitted at once and pulled
round-robin (as the server's worker does), then each of the 4 alone; entropix, seeds 100 + i.
Reports tokens/s (all tokens / wall time), tokens per CPU second of the process (less sensitive
to neighbours on a shared machine), and how many streams equal the same request served alone.

    uv run benchmarks/family_batch.py                # ~5 min on a 2-core CPU
    uv run benchmarks/family_batch.py --rounds 3 --models tiny tiny-uncompiled
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
MODELS = ("family", "ours", "tiny", "tiny-uncompiled", "family-uncompiled", "tiny-gemma3")


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


# The tests' tiny shape (tests/test_families.py BASE); no EOS in the config (the tokenizer's).
TINY = {"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 2,
        "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5, "vocab_size": 256, "max_position_embeddings": 512,
        "rope_theta": 10000.0, "tie_word_embeddings": False}  # fmt: skip
# Request i's prompt (ids): with seed 100 + i each stream runs 128 tokens without an EOS.
TINY_PROMPTS = [[(7 * j + 9 * i + 1) % 250 for j in range(12 + 3 * i % 5)] for i in range(4)]


# A sliding first layer (window 8) and a global last one (tests/test_families.py's gemma3_text).
TINY_GEMMA3 = {**TINY, "model_type": "gemma3_text", "head_dim": 16, "sliding_window": 8,
               "sliding_window_pattern": 2}  # fmt: skip


def tiny_checkpoint(root: Path, tokenizer, config: dict = TINY) -> Path:
    """A random tiny model made by mlx-lm's own class (seeded: the same every run)."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    module = importlib.import_module(
        f"mlx_lm.models.{config['model_type'].replace('mistral', 'llama')}"
    )
    mx.random.seed(0)
    model = module.Model(module.ModelArgs.from_dict(config))
    mx.save_safetensors(str(root / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (root / "config.json").write_text(json.dumps(config))
    tokenizer.hf.save_pretrained(str(root))
    return root


def serve(
    decoder, lm, prompts: list, max_tokens: int, first: int = 0
) -> tuple[float, list[list[int]], float]:
    """Submit ``prompts`` (text or ids; requests ``first``, ``first`` + 1, ...: seed 100 + their
    number) at once, pull them round-robin: (wall time, each stream's ids, CPU time)."""
    from mlx_entropix.engine.generate import prepare_prompt

    t0, c0 = time.perf_counter(), time.process_time()
    reqs = [
        decoder.submit(prepare_prompt(lm, p, max_tokens=max_tokens),
                       [("entropix", 100 + first + i)], max_tokens=max_tokens)
        for i, p in enumerate(prompts)
    ]  # fmt: skip
    out = [[e.id for e in events] for events in token_events(decoder, reqs)]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall, out, cpu


def token_events(decoder, reqs: list) -> list[list]:
    """Each submitted request's token events, its pull served round-robin as the server's
    worker does (a round runs once every request's events are out: one pulled to its end
    alone would wait for the others forever)."""
    pulls = dict(enumerate(decoder.pull(r) for r in reqs))
    out: list[list] = [[] for _ in reqs]
    while pulls:
        for i, pull in list(pulls.items()):
            item = next(pull, "end")
            if item == "end":
                del pulls[i]
            elif item is not None and item[1].type == "token":
                out[i].append(item[1])
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--tiny-tokens", type=int, default=128, help="tokens per tiny-model stream")
    p.add_argument("--models", nargs="+", default=list(MODELS[:4]), choices=list(MODELS))
    p.add_argument("--model", help="ours / the tokenizer (default: the embedded SmolLM2-135M)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.io.load import load
    from mlx_entropix.models.families import FamilyModel
    from mlx_entropix.runtime.blas import batch_invariant

    invariant = batch_invariant()
    models, embedded = {}, load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            root = Path(tmp) / name
            root.mkdir()
            if name.startswith("family"):
                models[name] = load(str(checkpoint(root)))
            elif name == "ours":
                models[name] = embedded
            else:
                config = TINY_GEMMA3 if name == "tiny-gemma3" else TINY
                models[name] = load(str(tiny_checkpoint(root, embedded.tokenizer, config)))
    for name, lm in models.items():
        assert name == "ours" or isinstance(lm.model, FamilyModel), name
        if name.endswith("-uncompiled"):  # the decoder's step call, its pass uncompiled
            model = lm.model
            model.decode_shared = lambda t, c, _on=True, m=model: type(m).decode_shared(
                m, t, c, False
            )
    tiny = args.tiny_tokens
    work = {n: (TINY_PROMPTS, tiny) if n.startswith("tiny") else (PROMPTS, args.max_tokens)
            for n in models}  # fmt: skip
    decoders = {name: BatchDecoder(lm) for name, lm in models.items()}
    for name, lm in models.items():
        serve(decoders[name], lm, work[name][0][: args.requests], 4)  # warm-up (compiles)
    rounds = []
    for _ in range(args.rounds):
        for name, lm in models.items():  # in turn: neighbours' load falls on each alike
            decoder, (prompts, n) = decoders[name], work[name]
            prompts = prompts[: args.requests]
            t_one, one, c_one = serve(decoder, lm, prompts[:1], n)
            t_all, together, c_all = serve(decoder, lm, prompts, n)
            alone = [serve(decoder, lm, [p], n, i) for i, p in enumerate(prompts)]
            n_one, n_all = len(one[0]), sum(len(ids) for ids in together)
            row = {
                "model": name,
                "single_tok_s": n_one / t_one,
                "concurrent_tok_s": n_all / t_all,
                "one_after_another_tok_s": n_all / sum(t for t, _, _ in alone),
                "single_tok_cpu_s": n_one / c_one,
                "concurrent_tok_cpu_s": n_all / c_all,
                "identical_to_alone": sum(
                    a[1][0] == b for a, b in zip(alone, together, strict=True)
                ),
                "tokens": [len(ids) for ids in together],
            }
            row["ratio"] = row["concurrent_tok_s"] / row["single_tok_s"]
            row["ratio_cpu"] = row["concurrent_tok_cpu_s"] / row["single_tok_cpu_s"]
            rounds.append(row)
            print(json.dumps(row), flush=True)
    numeric = [k for k, v in rounds[0].items() if isinstance(v, int | float)]
    summary = {
        name: {k: statistics.median(r[k] for r in rounds if r["model"] == name) for k in numeric}
        for name in models
    }
    report = {
        "what": "mlx-lm family models in the shared batch (the embedded SmolLM2 as mistral; "
        "a random tiny mistral, its step compiled and not), against our Llama",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "batch_invariant": invariant,
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "goal": f"{args.requests} concurrent >= 2.5x one alone, each stream equal to itself alone",
        "rounds": rounds,
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
