"""Ctrl-C in the terminal front ends: the first stops the generation, which still reports."""

from __future__ import annotations

import math
import time
from typing import Any

SAME_CTRL_C_S = 0.5  # a second SIGINT this soon after the first is the same Ctrl-C


class Interrupt:
    """First Ctrl-C: ask the running generation to stop (it then reports 'cancelled').

    A second Ctrl-C raises KeyboardInterrupt as usual, for a stuck prefill or model load, unless
    it comes within ``SAME_CTRL_C_S``: under ``uv run`` (the README's command) a terminal's
    Ctrl-C reaches uv and this process, and uv forwards it, so one Ctrl-C is two SIGINTs.
    Under ``mlx.launch`` the terminal's Ctrl-C reaches every rank, each at its own step: rank
    0's decides (one collective per check), so all ranks stop at the same step; a rank that
    stopped alone would leave the others waiting in a collective.
    """

    def __init__(self, group: Any = None) -> None:
        self.requested = False  # this process saw Ctrl-C
        self.stopped = False  # the answer of the last ``stop_now``: every rank's the same
        self.group = group
        self.at = 0.0  # when the first Ctrl-C came

    def stop_now(self) -> bool:
        if self.group is None:
            self.stopped = self.requested
        else:
            import mlx.core as mx

            from ..uncertainty.step import from_rank0

            flag = from_rank0(mx.array([int(self.requested)]), self.group)
            self.stopped = bool(flag.item())
        return self.stopped

    def __call__(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if not self.requested:
            self.requested, self.at = True, now
        elif now - self.at > SAME_CTRL_C_S:
            raise KeyboardInterrupt


class PromptInterrupt:
    """Ctrl-C at an input prompt: a ``KeyboardInterrupt`` (the line is dropped), once per
    Ctrl-C: the copy ``uv run`` forwards within ``SAME_CTRL_C_S`` is ignored."""

    def __init__(self) -> None:
        self.at = -math.inf

    def __call__(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if now - self.at > SAME_CTRL_C_S:
            self.at = now
            raise KeyboardInterrupt
