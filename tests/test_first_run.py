"""A fresh machine's first run (``runtime.kernels``, ``io.warmup``): with an empty kernel cache
the engine starts uncompiled at once, builds the kernels in the background, and gives the same
tokens before and after it switches to them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, sys, time
import mlx_entropix
from mlx_entropix.engine.batch import BatchDecoder
from mlx_entropix.engine.generate import generate, prepare_prompt
from mlx_entropix.io.load import load
from mlx_entropix.io.warmup import FirstRun
from mlx_entropix.runtime import device, kernels

lines = []
lm = load()
cold = {"warm": kernels.is_warm(), "built": kernels.kernels_built(),
        "dir": str(kernels.kernel_dir())}
t0 = time.perf_counter()
first = FirstRun.start(lm, None, say=lines.append)
assert first is not None and not lm.compile_steps

def tokens():
    out = {}
    for mode in ("entropix", "normal", "greedy"):
        evs = list(generate(lm, "Which number is larger, 9.9 or 9.11?", mode=mode, seed=3,
                            max_tokens=10))
        out[mode] = [e.id for e in evs if e.type == "token"]
    decoder = BatchDecoder(lm)
    ids = prepare_prompt(lm, "Name a colour.")
    req = decoder.submit(ids, [("entropix", 1), ("normal", 2)], max_tokens=8)
    out["batch"] = [(r, e.id) for r, e in (x for x in decoder.pull(req) if x) if e.type == "token"]
    return out

before = tokens()
first_token_s = time.perf_counter() - t0
built_before = kernels.kernels_built()
first.warm.proc.wait(timeout=1500)
resumed = first.resume_if_ready()
after = tokens()
print(json.dumps({"cold": cold, "before": before, "after": after, "resumed": resumed,
                  "compile_steps": lm.compile_steps, "warm": kernels.is_warm(),
                  "built_before": built_before, "built": kernels.kernels_built(),
                  "info": device.runtime_info().as_dict(), "lines": lines,
                  "uncompiled_s": first_token_s}))
"""


def test_a_cold_kernel_cache_gives_the_same_tokens_before_and_after_the_build(tmp_path):
    env = {**os.environ, "MLX_ENTROPIX_KERNEL_CACHE": str(tmp_path / "kernels")}
    env.pop("MLX_ENTROPIX_COMPILE", None)
    env.pop("MLX_ENTROPIX_KERNEL_WARMUP", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    folder = Path(out["cold"]["dir"])
    assert folder.is_relative_to(tmp_path / "kernels")  # MLX wrote where we said
    assert not out["cold"]["warm"] and out["cold"]["built"] <= 2  # (the load's compile probe)
    assert out["before"] == out["after"]  # the same tokens uncompiled and compiled
    assert out["resumed"] and out["compile_steps"] and out["warm"]
    assert out["built"] >= 20 and out["built_before"] < out["built"]
    assert out["info"]["kernel_cache"] == str(folder) and out["info"]["kernel_cache_warm"]
    assert "first run" in out["lines"][0] and "compiled from now on" in out["lines"][-1]
    assert (folder / "mlx-entropix-warm").exists()


def test_the_kernel_folder_follows_the_setting(tmp_path):
    code = ("import mlx_entropix, tempfile; from mlx_entropix.runtime import kernels; "
            "print(kernels.kernel_dir()); print(tempfile.gettempdir())")  # fmt: skip
    env = {**os.environ, "MLX_ENTROPIX_KERNEL_CACHE": str(tmp_path / "k")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert Path(out[0]).is_relative_to(tmp_path / "k") and out[0].endswith("/cpu")
    assert not Path(out[1]).is_relative_to(tmp_path / "k")  # Python's temp files: unchanged
    env["MLX_ENTROPIX_KERNEL_CACHE"] = "tmp"
    env["TMPDIR"] = str(tmp_path / "t")
    (tmp_path / "t").mkdir()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    assert Path(out[0]).is_relative_to(tmp_path / "t")  # MLX's default: the temporary folder
