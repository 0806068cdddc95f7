"""MLX's compiled CPU kernels: where they are kept, whether they are built, building them.

On the CPU ``mx.compile`` fuses element-wise chains into C++ kernels that MLX builds with g++
at their first use and keeps as shared libraries in ``<temporary dir>/mlx/<version>/cpu``
(``std::filesystem::temp_directory_path``: ``$TMPDIR``, else /tmp; MLX has no setting of its
own). A fresh machine's first run built about 50 of them before its first token: 37.7 to 83 s
on the 2-core VM (benchmarks/README.md, "A first run"), lost wherever /tmp is cleared at boot.

So: ``use_cache_dir`` (at import, before anything compiles) points ``$TMPDIR`` at a per-user
cache folder (``$XDG_CACHE_HOME/mlx-entropix``, else ``~/.cache/mlx-entropix``; macOS
``~/Library/Caches/mlx-entropix``; ``MLX_ENTROPIX_KERNEL_CACHE``: another folder, or ``tmp`` for
MLX's default), with Python's own temporary files kept where they were; and while the kernels
are not built yet (``is_warm``), a first run goes uncompiled (the same tokens,
``tests/test_compiled.py``) and ``Warmup`` builds them in a background process at low
priority (``python -m mlx_entropix.cli.warm``), which marks the folder warm when done.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_CACHE = "MLX_ENTROPIX_KERNEL_CACHE"  # a folder, or "tmp": MLX's default (the temp dir)
ENV_WARMUP = "MLX_ENTROPIX_KERNEL_WARMUP"  # "0": build kernels in the foreground, as MLX does
MARKER = "mlx-entropix-warm"  # in the kernel folder: the warm-up finished there


def default_root() -> Path:
    if platform.system() == "Darwin":
        return Path.home() / "Library" / "Caches" / "mlx-entropix"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mlx-entropix"


def use_cache_dir() -> Path | None:
    """Point MLX's kernel cache at the per-user folder (once; before the first compile).
    Returns the folder, or None when MLX keeps its default (``tmp``, or the folder cannot be
    made)."""
    want = os.environ.get(ENV_CACHE, "").strip()
    if want.lower() == "tmp":
        return None
    root = Path(want).expanduser() if want else default_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    tempfile.gettempdir()  # Python's temporary files stay in the usual place (cached now)
    os.environ["TMPDIR"] = str(root)  # MLX reads it at every new kernel; g++ inherits it
    return root


def kernel_dir() -> Path:
    """Where MLX keeps (or will keep) its compiled CPU kernels in this process."""
    import mlx.core as mx

    # as libstdc++'s temp_directory_path reads it (not Python's pinned tempfile.tempdir)
    names = ("TMPDIR", "TMP", "TEMP", "TEMPDIR")
    base = next((os.environ[n] for n in names if os.environ.get(n)), "/tmp")
    return Path(base) / "mlx" / mx.__version__ / "cpu"


def kernels_built() -> int:
    try:
        return sum(1 for p in kernel_dir().iterdir() if p.suffix == ".so")
    except OSError:
        return 0


def is_warm() -> bool:
    """The warm-up finished in this folder (for this MLX version: the folder is per version)."""
    return (kernel_dir() / MARKER).exists()


def mark_warm() -> None:
    kernel_dir().mkdir(parents=True, exist_ok=True)
    (kernel_dir() / MARKER).write_text(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")


def needs_warmup(backend: str, compiling: bool) -> bool:
    """A CPU run that compiles with g++ into a folder where the warm-up has not finished (and
    ``MLX_ENTROPIX_KERNEL_WARMUP`` is not 0: the tests keep one compile state throughout)."""
    if os.environ.get(ENV_WARMUP, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    return backend == "cpu" and compiling and shutil.which("g++") is not None and not is_warm()


class Warmup:
    """The background build: a low-priority process running the engine's per-token functions
    compiled once, so MLX builds and stores every kernel they use."""

    def __init__(self, model: str | None):
        args = [sys.executable, "-m", "mlx_entropix.cli.warm"]
        if model:
            args += ["--model", model]
        self.log = kernel_dir().parent / "warm.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # fmt: skip

    def ready(self) -> bool:
        return self.proc.poll() is not None and is_warm()

    def running(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> str:
        """A line for stderr or the log: what the build has done so far."""
        took = time.monotonic() - self.started
        if self.ready():
            return f"compiled CPU kernels ready ({kernels_built()} in {kernel_dir()})"
        state = "building" if self.running() else f"stopped (see {self.log})"
        return f"CPU kernels {state}: {kernels_built()} built in {took:.0f} s"


def nice_self() -> None:
    """Lower this process's priority (the warm-up must not slow the run it serves)."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)
