"""The server under ``mlx.launch``: rank 0 serves HTTP, the other ranks follow its jobs.

Every forward pass of a split model holds collectives, so all ranks must run the same
generations, token for token. Rank 0's worker sends each job's arguments (a few hundred bytes
of JSON) before running it; the followers block on ``receive_job``, run the same
``generation_work`` silently and wait for the next. Stopping is agreed too: a cancel or time
limit seen on rank 0 reaches the followers through ``synced_stop`` at the same step, so no rank
is left waiting in a collective that the others skipped. At its shutdown rank 0 tells the
followers to exit (``Engine.close``, after its last job); should it die instead, its connections
close and the followers' wait fails: they exit too. Followers ignore Ctrl-C (``main.py``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import mlx.core as mx

from ..config import SamplerConfig
from ..uncertainty.step import from_rank0

log = logging.getLogger("mlx_entropix.server")


def _from_rank0(values: list[int], group: mx.distributed.Group) -> list[int]:
    """Rank 0's ``values`` on every rank (the others' values are ignored)."""
    return from_rank0(mx.array(values, dtype=mx.int32), group).tolist()


def send_job(group: mx.distributed.Group, spec: dict[str, Any] | None) -> None:
    """Rank 0: the next job's arguments to every follower (None: shut down)."""
    data = b"" if spec is None else json.dumps(spec).encode()
    _from_rank0([len(data)], group)
    if data:
        _from_rank0(list(data), group)


def receive_job(group: mx.distributed.Group) -> dict[str, Any] | None:
    """A follower: block until rank 0 sends a job; None means shut down."""
    (size,) = _from_rank0([0], group)
    if not size:
        return None
    return json.loads(bytes(_from_rank0([0] * size, group)).decode())


def synced_stop(group: mx.distributed.Group, should_stop: Callable[[], bool]) -> Callable[[], bool]:
    """``should_stop`` as rank 0 answers it, on every rank (one tiny collective per token)."""

    def stop() -> bool:
        return bool(_from_rank0([int(should_stop()) if group.rank() == 0 else 0], group)[0])

    return stop


def follow(engine: Any, group: mx.distributed.Group, generation_work: Callable[..., Any]) -> None:
    """A follower's loop: run rank 0's jobs, in order, until it says shut down.
    (``generation_work`` from ``engine.py``, passed in: that module imports this one.)"""
    while True:
        try:
            spec = receive_job(group)
        except RuntimeError as err:  # rank 0 exited (shutdown or crash): so do we
            log.info("rank %d: rank 0 is gone (%s); exiting", group.rank(), err)
            return
        if spec is None:  # rank 0 shuts down (Engine.close)
            log.info("rank %d: rank 0 shuts down; exiting", group.rank())
            return
        spec["config"] = SamplerConfig.model_validate(spec["config"])
        work = generation_work(**spec)
        try:
            for _ in work(engine, lambda: False, follower=True):
                pass
        except Exception:  # rank 0 reports the same error to its client; keep following
            log.exception("rank %d: job failed", group.rank())
