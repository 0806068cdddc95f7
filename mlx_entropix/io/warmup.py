"""A fresh machine's first run: uncompiled until MLX's CPU kernels are built in the background.

A run that finds the kernel folder cold (``runtime.kernels``: why, and how long a build takes)
starts uncompiled (the same tokens), says so on stderr, and ``resume_if_ready`` switches to the
compiled functions once they are built (the server between requests, the CLI between prompts).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..runtime import device, kernels
from ..uncertainty import compiled

if TYPE_CHECKING:
    from .load import LoadedModel


def to_stderr(line: str) -> None:
    print(f"mlx-entropix: {line}", file=sys.stderr, flush=True)


class FirstRun:
    def __init__(self, lm: LoadedModel, warm: kernels.Warmup, say: Callable[[str], None]):
        self.lm, self.warm, self.say = lm, warm, say
        self.resumed = False

    @classmethod
    def start(
        cls, lm: LoadedModel, model: str | None, say: Callable[[str], None] = to_stderr
    ) -> FirstRun | None:
        """If this run would build kernels before its first token: run ``lm`` uncompiled and
        start the background build (None: nothing to wait for)."""
        if lm.model.group is not None or not kernels.needs_warmup(
            device.backend(), lm.compile_steps
        ):
            return None
        compiled.pause(True)
        lm.compile_steps = False
        warm = kernels.Warmup(model)
        say(f"first run with this kernel cache: MLX builds its fused CPU kernels with g++ "
            f"(about 50, once; a minute or two) in the background into {kernels.kernel_dir()}; "
            "meanwhile this runs uncompiled (the same tokens, slower per token)")  # fmt: skip
        return cls(lm, warm, say)

    def resume_if_ready(self) -> bool:
        """Compiled from now on if the kernels are built (call between generations)."""
        if not self.resumed and self.warm.ready():
            compiled.pause(False)
            self.lm.compile_steps = True
            self.resumed = True
            self.say(f"{self.warm.status()}: compiled from now on")
        return self.resumed

    def report_progress(self, every_s: float) -> None:
        """A line every ``every_s`` while the build runs (a daemon thread: the server's log)."""

        def loop() -> None:
            while self.warm.running():
                try:
                    self.warm.proc.wait(every_s)
                except Exception:  # TimeoutExpired: still building
                    self.say(self.warm.status())
            self.say(self.warm.status())

        threading.Thread(target=loop, name="kernel-warmup", daemon=True).start()

    def closing_note(self) -> None:
        """At the end of a run: where the build stands (it goes on if unfinished)."""
        if not self.resumed:
            tail = "; it goes on in the background" if self.warm.running() else ""
            self.say(f"{self.warm.status()}{tail} (the next run starts compiled once it is done)")
