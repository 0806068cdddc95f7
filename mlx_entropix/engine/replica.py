"""The shared batch under ``mlx.launch``: every rank runs the same schedule, rank 0's.

Every forward pass of a split model holds collectives, so all ranks must step the same rows in
the same order. Rank 0 serves: its consumers submit requests, pull events and so run ticks.
``ReplicatedDecoder`` sends each call the schedule depends on (submit, tick, a consumer leaving
early) to the other ranks before running it, and they replay it on a decoder of their own
(``follow``). What only rank 0 sees is agreed instead, rank 0's answer on every rank: whether
a request should stop (a client's cancel, a time limit), asked once per tick for all requests
and sent with the tick, and the clock that ends a prefill slice, one tiny collective a layer.
The draws are rank 0's too (``uncertainty.step.from_rank0``). So the server batches its
requests under ``mlx.launch`` as it does in one process, with the same events.

Every message opens with a head of 1 + (running requests) integers, which every rank can size
(they hold the same requests): a tick with each request's stop flag, the length of a JSON
message that follows (a submit, a consumer leaving, the prefix cache's start), a layer of the
prefix cache's filling while no request runs (``idle_step``: every rank's cache holds the same
blocks), or exit. When rank 0 shuts down it says so (``close``); should it die, the followers'
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
from .prefix_cache import PrefixCache
from .request import BatchRequest

if TYPE_CHECKING:
    from ..io.load import LoadedModel

__all__ = ["ReplicatedDecoder"]
log = logging.getLogger("mlx_entropix.engine")
# heads that are messages of their own (a positive head: a JSON size)
TICK, IDLE, EXIT = -1, -2, 0


class ReplicatedDecoder(BatchDecoder):
    """A ``BatchDecoder`` whose schedule rank 0 makes and every rank runs."""

    def __init__(self, lm: LoadedModel, group: mx.distributed.Group, **options: Any):
        self.group = group
        self.leader = group.rank() == 0
        # each request's stop check (rank 0's own) and the answer agreed at the last tick
        self._stops: dict[BatchRequest, tuple[Callable[[], bool], list[bool]]] = {}
        super().__init__(lm, **options)

    def use_prefix_cache(self, prefix: PrefixCache | None) -> None:
        """Rank 0: the followers keep a cache of the same size from this point of the schedule
        on (the same blocks: the same prompts, in the same order, of the same sizes)."""
        if self.leader and prefix is not None:
            self._send({"prefix_cache": prefix.max_bytes})
        super().use_prefix_cache(prefix)

    def submit(  # type: ignore[override]
        self,
        ids: list[int],
        rows: Sequence[tuple[Mode, int]],
        *,
        config: SamplerConfig | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        **options: Any,  # ``BatchDecoder.submit``'s: sent to every rank as they are
    ) -> BatchRequest:
        cfg = config or self.lm.default_config
        args = {"ids": list(ids), "rows": [[m, int(s)] for m, s in rows], **options}
        if self.leader:
            self._send({**args, "config": cfg.model_dump(mode="json")})
        agreed = [False]  # rank 0's answer at the last tick: the decoder reads it until the next
        req = super().submit(**args, config=cfg, should_stop=lambda: agreed[0])
        self._stops[req] = (should_stop, agreed)
        return req

    def tick(self) -> None:
        self._stops = {r: self._stops[r] for r in self.requests}  # ended ones go
        if self.leader:
            for ask, agreed in self._stops.values():
                agreed[0] = ask()
            self._send_head(TICK, [int(agreed[0]) for _, agreed in self._stops.values()])
        super().tick()

    def discard(self, req: BatchRequest) -> None:
        if self.leader and req in self.requests:  # its consumer left before its end
            self._send({"discard": self.requests.index(req)})
        super().discard(req)

    def idle_step(self) -> bool:
        if self.leader and not self.requests and self.extender is not None:
            self._send_head(IDLE)
        return super().idle_step()

    def _out_of_time(self, deadline: float) -> bool:
        """Rank 0's clock on every rank."""
        late = self._broadcast([int(super()._out_of_time(deadline)) if self.leader else 0])
        return bool(late[0])

    def close(self) -> None:
        """Rank 0, after its last request: the followers exit."""
        if self.leader:
            self._send_head(EXIT)

    def follow(self) -> None:
        """A follower's loop: replay rank 0's calls until it says exit, or is gone."""
        rank = self.group.rank()
        while True:
            try:
                kind, *flags = self._broadcast([0] * (1 + len(self.requests)))
                message = json.loads(bytes(self._broadcast([0] * kind))) if kind > 0 else None
            except RuntimeError as err:  # rank 0 exited (a crash): so do we
                log.info("rank %d: rank 0 is gone (%s); exiting", rank, err)
                return
            if kind == EXIT:
                log.info("rank %d: rank 0 shuts down; exiting", rank)
                return
            try:
                if kind == IDLE:
                    self.idle_step()
                elif message is None:  # a tick, with rank 0's stop flags
                    for req, flag in zip(self.requests, flags, strict=True):
                        self._stops[req][1][0] = bool(flag)
                    self.tick()
                elif "prefix_cache" in message:
                    self.use_prefix_cache(PrefixCache(message["prefix_cache"]))
                elif "discard" in message:
                    self.discard(self.requests[message["discard"]])
                else:
                    config = SamplerConfig.model_validate(message.pop("config"))
                    self.submit(**message, config=config)
            except Exception:  # rank 0 met the same error and reports it to its client
                log.exception("rank %d: a replayed call failed", rank)
            for req in self.requests:  # rank 0 streams the events; here they go nowhere
                req.events.clear()

    # ------------------------------------------------------------------ the wire
    def _broadcast(self, values: list[int]) -> list[int]:
        return from_rank0(mx.array(values, dtype=mx.int32), self.group).tolist()

    def _send_head(self, kind: int, flags: list[int] | None = None) -> None:
        self._broadcast([kind, *(flags or [0] * len(self.requests))])

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        self._send_head(len(data))
        self._broadcast(list(data))
