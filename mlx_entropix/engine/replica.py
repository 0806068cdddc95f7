"""The shared batch under ``mlx.launch``: every rank runs the same schedule, rank 0's.

Every forward pass of a split model holds collectives, so all ranks must step the same rows in
the same order. Rank 0 serves: its consumers submit requests, pull events and so run ticks.
``ReplicatedDecoder`` sends each call the schedule depends on (submit, tick, a consumer leaving
early) to the other ranks before running it, and they replay it on a decoder of their own
(``follow``). What only rank 0 sees (a client's cancel, a time limit, the clock that ends a
prefill slice) is agreed instead: rank 0's answer on every rank, one tiny collective each. The
draws are rank 0's too (``uncertainty.step.from_rank0``). So the server batches its requests
under ``mlx.launch`` as it does in one process, with the same events.

Messages are length-prefixed JSON broadcast from rank 0 (a few hundred bytes a request; a tick
is one integer). When rank 0 shuts down it says so (``close``); should it die, the followers'
wait fails and they exit too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import mlx.core as mx

from ..config import Mode, SamplerConfig
from ..uncertainty.step import from_rank0
from .batch import BatchDecoder
from .request import BatchRequest

if TYPE_CHECKING:
    from ..io.load import LoadedModel

__all__ = ["ReplicatedDecoder"]
log = logging.getLogger("mlx_entropix.engine")
TICK, EXIT = -1, 0  # message sizes that are messages of their own


class ReplicatedDecoder(BatchDecoder):
    """A ``BatchDecoder`` whose schedule rank 0 makes and every rank runs."""

    def __init__(self, lm: LoadedModel, group: mx.distributed.Group, **options: Any):
        super().__init__(lm, **options)
        self.group = group
        self.leader = group.rank() == 0

    def submit(  # type: ignore[override]
        self,
        ids: list[int],
        rows: Sequence[tuple[Mode, int]],
        *,
        config: SamplerConfig | None = None,
        max_tokens: int = 256,
        stop: Sequence[str] = (),
        top_logprobs: int = 5,
        should_stop: Callable[[], bool] = lambda: False,
        fmt: str = "chat",
    ) -> BatchRequest:
        cfg = config or self.lm.default_config
        args = {"ids": list(ids), "rows": [[m, int(s)] for m, s in rows], "max_tokens": max_tokens,
                "stop": list(stop), "top_logprobs": top_logprobs, "fmt": fmt}  # fmt: skip
        if self.leader:
            self._send({**args, "config": cfg.model_dump(mode="json")})
        args["rows"] = [tuple(r) for r in args["rows"]]
        return super().submit(**args, config=cfg, should_stop=lambda: self._agree(should_stop()))

    def tick(self) -> None:
        if self.leader:
            self._broadcast([TICK])
        super().tick()

    def discard(self, req: BatchRequest) -> None:
        if self.leader and req in self.requests:  # its consumer left before its end
            self._send({"discard": self.requests.index(req)})
        super().discard(req)

    def _out_of_time(self, deadline: float) -> bool:
        return self._agree(super()._out_of_time(deadline))

    def close(self) -> None:
        """Rank 0, after its last request: the followers exit."""
        if self.leader:
            self._broadcast([EXIT])

    def follow(self) -> None:
        """A follower's loop: replay rank 0's calls until it says exit, or is gone."""
        rank = self.group.rank()
        while True:
            try:
                message = self._receive()
            except RuntimeError as err:  # rank 0 exited (a crash): so do we
                log.info("rank %d: rank 0 is gone (%s); exiting", rank, err)
                return
            if message == EXIT:
                log.info("rank %d: rank 0 shuts down; exiting", rank)
                return
            try:
                if message == TICK:
                    self.tick()
                elif "discard" in message:  # type: ignore[operator]
                    self.discard(self.requests[message["discard"]])  # type: ignore[index]
                else:
                    config = SamplerConfig.model_validate(message.pop("config"))  # type: ignore[union-attr]
                    message["rows"] = [tuple(r) for r in message["rows"]]  # type: ignore[index]
                    self.submit(**message, config=config)  # type: ignore[arg-type]
            except Exception:  # rank 0 met the same error and reports it to its client
                log.exception("rank %d: a replayed call failed", rank)
            for req in self.requests:  # rank 0 streams the events; here they go nowhere
                req.events.clear()

    # ------------------------------------------------------------------ the wire
    def _agree(self, value: bool) -> bool:
        """Rank 0's ``value`` on every rank."""
        return bool(self._broadcast([int(value) if self.leader else 0])[0])

    def _broadcast(self, values: list[int]) -> list[int]:
        return from_rank0(mx.array(values, dtype=mx.int32), self.group).tolist()

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        self._broadcast([len(data)])
        self._broadcast(list(data))

    def _receive(self) -> dict[str, Any] | int:
        (size,) = self._broadcast([0])
        if size <= 0:
            return size
        return json.loads(bytes(self._broadcast([0] * size)).decode())
