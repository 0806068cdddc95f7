"""``python -m mlx_entropix.cli.warm``: build MLX's compiled CPU kernels once, in the background.

Started by a run that found the kernel folder cold (``io.warmup``): at low priority, it runs the
engine's per-token functions compiled (every mode, a batch of two with a short and a chunked
prompt), so MLX builds and stores the kernels they use, then marks the folder warm. One at a
time per folder (a lock); exits at once if the folder is warm already.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import time
from collections.abc import Sequence

from ..runtime import kernels


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m mlx_entropix.cli.warm")
    p.add_argument("--model", default=None, help="the model the run loaded (default: embedded)")
    args = p.parse_args(argv)
    kernels.nice_self()
    folder = kernels.kernel_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / "warm.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another warm-up is building into this folder
        if kernels.is_warm():
            return 0
        t0 = time.monotonic()
        build(args.model)
        kernels.mark_warm()
        print(f"warm: {kernels.kernels_built()} kernels in {time.monotonic() - t0:.0f} s "
              f"({folder})", file=sys.stderr)  # fmt: skip
    return 0


def build(model: str | None) -> None:
    from ..engine.generate import generate_batch
    from ..io.load import load

    lm = load(model)
    chunked = "Tell me about rivers, " + "and more " * 80  # over one chunk: prefilled in chunks
    runs = [(["entropix"], "Hi"), (["normal"], "Hi"), (["greedy"], "Hi"),
            (["entropix", "normal"], "Hi"), (["entropix", "normal"], chunked)]  # fmt: skip
    for modes, text in runs:
        for _ in generate_batch(lm, text, modes=modes, seeds=[0] * len(modes), max_tokens=6):
            pass


if __name__ == "__main__":
    sys.exit(main())
