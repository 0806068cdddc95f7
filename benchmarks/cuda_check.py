"""The CUDA path on an NVIDIA machine, in one short run (``benchmarks/cuda_check.sh``).

The embedded GGUF (98 MB) cannot travel to a lent GPU machine (64 MiB a call), so the model
checked there is a random Llama of the embedded model's exact shape (SmolLM2-135M: 30 layers of
576, vocabulary 49,152), stored as the embedded one is (4-bit groups of 32), with the embedded
model's tokenizer: speeds and ratios are those of the real model; its text is noise. Stages:

- ``slim`` (here, before the run): MLX's CUDA library cut to one GPU architecture's kernels;
- ``make``: write that checkpoint (MLX format: config.json with ``quantization``);
- ``sanity``: what runs (backend, device, compute dtype, compiled steps); the first step's
  logits on the GPU against the same weights on MLX's CPU backend; greedy, entropix and fork
  through the CLI's ``generate`` (tok/s, every metric finite, the quadrants seen); one request
  served alone against the same request in a batch of 4 (the batch invariance of the one path
  on this device: tokens, metrics and log-probs bitwise, or how far apart).

    python benchmarks/cuda_check.py make --shape shape.json --tokenizer DIR --out /tmp/rand
    python benchmarks/cuda_check.py sanity --model /tmp/rand --out sanity.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # the sibling benchmark modules
import mlx_entropix  # noqa: E402, F401  (BLAS preload before mlx)

import mlx.core as mx  # noqa: E402

PROMPT = "Explain in three sentences why the sky is blue."


def make(shape: Path, tokenizer: Path, out: Path, bits: int = 4, group: int = 32) -> None:
    """A seeded random Llama of ``shape`` (``ModelArgs`` fields), quantized like the GGUF."""
    from mlx_entropix.models.llama import Model, ModelArgs

    import mlx.nn as nn
    from mlx.utils import tree_flatten

    config = json.loads(shape.read_text())
    mx.random.seed(0)
    model = Model(ModelArgs.from_dict(config))
    nn.quantize(model, group_size=group, bits=bits)
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())))
    config = {**config, "model_type": "llama", "quantization": {"group_size": group, "bits": bits}}
    (out / "config.json").write_text(json.dumps(config))
    for f in tokenizer.iterdir():
        shutil.copy(f, out / f.name)


def slim(lib: Path, arch: int) -> int:
    """Zero the payloads of every kernel image in ``lib``'s ``.nv_fatbin`` section but the
    ``sm_<arch>`` machine code (a GPU loads only the image of its own architecture; zeros
    compress to nothing): MLX's CUDA wheel (90 MB) then travels in ~21 MB. Returns the bytes
    zeroed. Fatbin layout: headers of (magic 0xBA55ED50, version u16, header size u16, body
    size u64), each body a run of entries (kind u16: 1 PTX, 2 ELF; version u16; header size
    u32; payload size u64; ...; arch u32 at byte 28)."""
    import struct
    import subprocess

    data = bytearray(lib.read_bytes())
    table = subprocess.run(["readelf", "-S", "-W", str(lib)], capture_output=True, text=True)
    line = next(ln for ln in table.stdout.splitlines() if ".nv_fatbin" in ln)
    offset, size = (int(x, 16) for x in line.split("]")[1].split()[3:5])
    pos, end, zeroed = offset, offset + size, 0
    while pos < end:
        if data[pos : pos + 4] != b"\x50\xed\x55\xba":
            pos += 8  # fatbins are 8-byte aligned
            continue
        _, _, header, body = struct.unpack_from("<IHHQ", data, pos)
        entry, stop = pos + header, pos + header + body
        while entry < stop:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            if not (kind == 2 and struct.unpack_from("<I", data, entry + 28)[0] == arch):
                start = entry + entry_header
                data[start : start + payload] = bytes(payload)
                zeroed += payload
            entry += entry_header + payload
        pos = stop
    lib.write_bytes(data)
    return zeroed


def first_logits(lm, ids: list[int]) -> mx.array:
    cache = lm.model.make_cache()
    logits, _ = lm.model(mx.array(ids)[None], cache)
    return logits[0, -1].astype(mx.float32)


def run(lm, mode: str, tokens: int, seed: int = 7) -> dict:
    from mlx_entropix.engine.generate import generate

    t0 = time.perf_counter()
    events = list(generate(lm, PROMPT, mode=mode, seed=seed, max_tokens=tokens))
    wall = time.perf_counter() - t0
    toks = [e for e in events if e.type == "token"]
    times = [e.elapsed_s for e in toks]
    values = [v for e in toks for v in e.metrics.model_dump().values() if v is not None]
    return {
        "tokens": len(toks),
        "wall_s": wall,
        "tok_s_wall": len(toks) / wall,
        "decode_tok_s": (len(times) - 2) / (times[-1] - times[1]) if len(times) > 2 else None,
        "metrics_finite": all(math.isfinite(v) for v in values),
        "states": sorted({e.state for e in toks}),
        "events": sorted({e.type for e in events}),
    }


def batch_invariance(lm, tokens: int) -> dict:
    """One request alone, then the same request first in a batch of 4 (seeds 100 + i)."""
    from mlx_entropix.engine.batch import BatchDecoder
    from mlx_entropix.engine.generate import prepare_prompt

    prompts = [PROMPT, "Name three rivers.", "Write a haiku about rain.", "What is 17 + 25?"]

    def serve(texts: list[str]) -> list[list]:
        decoder = BatchDecoder(lm)
        reqs = [
            decoder.submit(prepare_prompt(lm, t), [("entropix", 100 + i)], max_tokens=tokens)
            for i, t in enumerate(texts)
        ]
        rows = importlib.import_module("family_batch").token_events(decoder, reqs)
        return [[(e.id, e.logprob, tuple(e.metrics.model_dump().values())) for e in row]
                for row in rows]  # fmt: skip

    alone, together = serve(prompts[:1])[0], serve(prompts)[0]
    same_ids = [a[0] for a in alone] == [b[0] for b in together]
    n = min(len(alone), len(together))
    diffs = [
        abs(x - y)
        for a, b in zip(alone[:n], together[:n], strict=True)
        for x, y in zip((a[1], *a[2]), (b[1], *b[2]), strict=True)
        if x is not None and y is not None
    ]
    return {
        "tokens": [len(alone), len(together)],
        "same_tokens": same_ids,
        "first_different_token": next((i for i in range(n) if alone[i][0] != together[i][0]), None),
        "bitwise": alone == together,
        "max_abs_diff_logprob_metrics": max(diffs) if diffs else None,
    }


def sanity(model: str, out: Path, tokens: int) -> None:
    from mlx_entropix.io.load import load
    from mlx_entropix.runtime.device import runtime_info

    report: dict = {"runtime": asdict(runtime_info())}
    t0 = time.perf_counter()
    lm = load(model)
    report["load_s"] = time.perf_counter() - t0
    report["model"] = lm.info.as_dict()

    def save() -> None:
        out.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(json.dumps(report, default=str), flush=True)

    save()
    ids = lm.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}])
    gpu = first_logits(lm, ids)
    with mx.stream(mx.cpu):
        cpu = first_logits(lm, ids)
    mx.eval(gpu, cpu)
    report["gpu_vs_cpu_first_logits"] = {
        "max_abs_diff": mx.abs(gpu - cpu).max().item(),
        "logits_abs_max": mx.abs(cpu).max().item(),
        "same_argmax": mx.argmax(gpu).item() == mx.argmax(cpu).item(),
    }
    save()
    for mode in ("greedy", "entropix", "fork"):
        run(lm, mode, 4)  # compiles
        report[mode] = run(lm, mode, tokens)
        save()
    report["batch_invariance"] = batch_invariance(lm, tokens)
    save()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    m = sub.add_parser("make")
    m.add_argument("--shape", type=Path, required=True, help="ModelArgs fields (JSON)")
    m.add_argument("--tokenizer", type=Path, required=True, help="tokenizer files (a folder)")
    m.add_argument("--out", type=Path, required=True)
    z = sub.add_parser("slim")
    z.add_argument("--lib", type=Path, required=True, help="libmlx.so (rewritten in place)")
    z.add_argument("--arch", type=int, default=90, help="the GPU's sm_XX (H100/H200: 90)")
    s = sub.add_parser("sanity")
    s.add_argument("--model", required=True)
    s.add_argument("--tokens", type=int, default=48)
    s.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.stage == "make":
        make(args.shape, args.tokenizer, args.out)
    elif args.stage == "slim":
        print(f"zeroed {slim(args.lib, args.arch) / 2**20:.0f} MiB of other GPUs' kernels")
    else:
        sanity(args.model, args.out, args.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
