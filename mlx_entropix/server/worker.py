"""One thread owns the model: it loads it and runs the jobs from a bounded FIFO queue.

MLX state (default device, streams, the model's arrays) belongs to the thread that made it, so
every job runs on that one thread. Up to ``max_running`` slots of jobs run at once, one item per
job per round (a job with nothing for its client yet yields ``IDLE``); the queue head starts
when its ``size`` fits in the free slots, never overtaken. ``JobStream`` is the asyncio side:
items cross with ``loop.call_soon_threadsafe``, cancellation with a ``threading.Event`` polled
once per token. The loader and the jobs' work are injected: the queueing is tested with fakes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

log = logging.getLogger("mlx_entropix.server")

R = TypeVar("R")  # what the loader returns (the engine), handed to every job
Work = Callable[[Any, Callable[[], bool]], Iterable[Any]]  # (resource, should_stop) -> items

END = object()  # the last item of every job
IDLE = None  # a work's "nothing for my client yet" (the engine's too): not emitted nor counted


class QueueFullError(Exception):
    """The queue is at capacity: answer 503 with ``Retry-After``."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy (queue full); retry in {retry_after} s")
        self.retry_after = retry_after


@dataclass
class JobFailed:
    """An item: the job's work raised an exception it did not handle itself."""

    error: BaseException


_ids = itertools.count(1)


@dataclass(eq=False)
class Job:
    work: Work
    emit: Callable[[Any], None]  # called in the worker thread with each item, then END
    timeout_s: float = math.inf
    label: str = ""
    size: int = 1  # slots it takes of the worker's max_running (e.g. its rows in a batch)
    id: int = field(default_factory=lambda: next(_ids))
    status: str = "pending"  # pending | running | done | cancelled
    items: int = 0
    items_after_cancel: int = 0  # how fast a cancel took effect (the test of "within one token")
    timed_out: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    started_at: float | None = None
    ended_at: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    # The worker thread's iterator of its work's items (empty until started, or if it failed)
    _items: Iterator[Any] = field(default_factory=lambda: iter(()))

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def should_stop(self) -> bool:
        """Polled by the work once per token: cancelled, or past its time limit."""
        if self._cancel.is_set():
            return True
        if self.started_at is not None and time.monotonic() - self.started_at > self.timeout_s:
            self.timed_out = True
            return True
        return False

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "status": self.status,
            "items": self.items,
            "items_after_cancel": self.items_after_cancel,
            "timed_out": self.timed_out,
            "wait_s": (self.started_at or self.queued_at) - self.queued_at,
            "run_s": (self.ended_at - self.started_at)
            if self.ended_at is not None and self.started_at is not None
            else None,
        }


class Worker(Generic[R]):
    """The model thread, its bounded FIFO queue and up to ``max_running`` slots of running jobs."""

    def __init__(
        self,
        loader: Callable[[], R],
        max_pending: int = 16,
        retry_after_s: int = 5,
        max_running: int = 1,
    ):
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        self._loader = loader
        self.max_pending = max_pending
        self.retry_after_s = retry_after_s
        self.max_running = max_running
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []  # in start order: the round-robin order
        self._closed = False
        self._ready = threading.Event()
        self._stopped = threading.Event()  # the thread's loop has ended (it stays, parked)
        self._thread = threading.Thread(target=self._thread_main, name="mlx-worker", daemon=True)
        self._durations: deque[float] = deque(maxlen=16)
        self.resource: R | None = None
        # The resource's ``idle_step()`` (if it has one) has background work: a job ended
        self._idle_work = False
        self.load_error: BaseException | None = None
        self.served = 0
        self.cancelled = 0
        self.last_job: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Worker[R]:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> R:
        """Block until the loader has run; re-raise its error if it failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError("the model is still loading")
        if self.load_error is not None:
            raise self.load_error
        return self.resource  # type: ignore[return-value]

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything and stop the thread (server shutdown)."""
        with self._cond:
            self._closed = True
            dropped = list(self._pending)
            self._pending.clear()
            for job in self._running:  # the thread drains them, then returns
                job.cancel()
            self._cond.notify_all()
        for job in dropped:
            job.cancel()
            job.status = "cancelled"
            _safe_emit(job, END)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._stopped.wait(timeout)

    @property
    def stopped(self) -> bool:
        """The thread has ended every job and closed its resource (after ``close``)."""
        return self._stopped.is_set()

    # ------------------------------------------------------------------ queue
    def submit(self, job: Job) -> Job:
        with self._cond:
            if self._closed:
                raise QueueFullError(self.retry_after_s)
            if len(self._pending) >= self.max_pending:
                raise QueueFullError(self._retry_after())
            self._pending.append(job)
            self._cond.notify()
        return job

    def cancel(self, job: Job) -> None:
        """Stop a running job at its next token, or drop a waiting one (freeing its place)."""
        job.cancel()
        with self._cond:
            try:
                self._pending.remove(job)
            except ValueError:
                return  # running or finished: the work sees should_stop()
        self._end(job)

    def _retry_after(self) -> int:
        """A guess at when a place frees up: recent job durations times the queue ahead, shared
        among the slots."""
        if not self._durations:
            return self.retry_after_s
        mean = sum(self._durations) / len(self._durations)
        return max(1, min(60, math.ceil(mean * (len(self._pending) + 1) / self.max_running)))

    def status(self) -> dict[str, Any]:
        with self._cond:
            return {
                "running": bool(self._running),
                "running_jobs": len(self._running),
                "max_running": self.max_running,
                "pending": len(self._pending),
                "max_pending": self.max_pending,
                "served": self.served,
                "cancelled": self.cancelled,
                "last_job": self.last_job,
            }

    # ------------------------------------------------------------------ the thread
    def _thread_main(self) -> None:
        try:
            self._main()
        finally:
            self._stopped.set()
        # The thread never returns: MLX 0.32 keeps each thread's mx.compile traces in a
        # thread-local cache whose destructor takes the GIL when the thread exits, and a thread
        # exiting while the interpreter shuts down aborts the process ("terminate called
        # without an active exception"). Parked, a daemon, it holds nothing up.
        threading.Event().wait()

    def _main(self) -> None:
        try:
            self.resource = self._loader()
        except BaseException as err:  # reported by wait_ready() in the starting thread
            self.load_error = err
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                admitted = self._admit()
                if admitted is None:
                    return
                for job in admitted:  # outside the lock: starting a work may take a while
                    self._start(job)
                progressed = False
                for job in list(self._running):  # one item per job, in start order
                    progressed |= self._step(job)
                if not self._running and not admitted and self._idle_work:
                    step = self._call_resource("idle_step", "background work failed")
                    self._idle_work = progressed = bool(step)
                if not progressed:
                    time.sleep(0)  # all idle (each next() did some shared work): let others run
        finally:  # a BaseException escaped a work: still end every stream
            for job in list(self._running):
                self._finish(job)
            self._call_resource("close", "closing the worker's resource failed")

    def _call_resource(self, name: str, failure: str) -> Any:
        """The resource's own method ``name`` if it has one, in this thread (the one that uses
        it): ``idle_step`` between jobs, ``close`` at the end. Its failure is logged."""
        method = getattr(self.resource, name, None)
        try:
            return method() if callable(method) else None
        except Exception:
            log.exception(failure)
            return None

    def _admit(self) -> list[Job] | None:
        """At a round boundary: wait while there is nothing to do, then take the queue's head
        while it fits in the free slots (or runs alone); ``None`` once closed and drained."""
        with self._cond:
            while not self._pending and not self._running and not self._closed:
                if self._idle_work:  # a step of it, then back here
                    return []
                self._cond.wait()
            if self._closed and not self._running:
                return None
            admitted: list[Job] = []
            used = sum(job.size for job in self._running)
            while self._pending and (used == 0 or used + self._pending[0].size <= self.max_running):
                job = self._pending.popleft()
                used += job.size
                admitted.append(job)
                self._running.append(job)  # counted in status() from now on
            return admitted

    def _start(self, job: Job) -> None:
        job.started_at = time.monotonic()  # its time limit counts from here
        job.status = "running"
        try:
            job._items = (
                iter(()) if job.cancelled else iter(job.work(self.resource, job.should_stop))
            )
        except Exception as err:  # e.g. work() validates eagerly: report; its next step ends it
            log.exception("job %s (%s) failed to start", job.id, job.label)
            _safe_emit(job, JobFailed(err))

    def _step(self, job: Job) -> bool:
        """Advance one job by one item; True if it emitted something or ended."""
        try:
            item = next(job._items)
        except StopIteration:
            self._finish(job)
            return True
        except Exception as err:  # the work's own bug or an MLX error: report, serve the others
            log.exception("job %s (%s) failed", job.id, job.label)
            _safe_emit(job, JobFailed(err))
            self._finish(job)
            return True
        if item is IDLE:
            return False
        job.items += 1
        if job.cancelled:
            job.items_after_cancel += 1
        _safe_emit(job, item)
        return True

    def _finish(self, job: Job) -> None:
        with self._cond:
            self._running.remove(job)
            self._idle_work = True
        job._items = iter(())  # an unfinished work is freed (and closed) here, in this thread
        job.ended_at = time.monotonic()
        if job.started_at is not None:
            self._durations.append(job.ended_at - job.started_at)
        self._end(job)

    def _end(self, job: Job) -> None:
        """A job's end (run or dropped from the queue): counted, and its stream's END."""
        job.status = "cancelled" if job.cancelled else "done"
        with self._cond:
            if job.status == "cancelled":
                self.cancelled += 1
            else:
                self.served += 1
            self.last_job = job.summary()
        _safe_emit(job, END)


def _safe_emit(job: Job, item: Any) -> None:
    try:
        job.emit(item)
    except Exception:  # e.g. the event loop is closed: nobody listens any more
        job.cancel()


class JobStream:
    """The asyncio face of a job: submit it now, iterate its items as they come.

    Leaving the iteration early (client disconnect, exception) cancels the job, so the worker
    moves on within one token and a waiting job gives its place back.
    """

    def __init__(self, worker: Worker[Any], work: Work, timeout_s: float, label: str = ""):
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._worker = worker
        emit = partial(asyncio.get_running_loop().call_soon_threadsafe, self._queue.put_nowait)
        size = getattr(work, "size", 1)  # a work may say how many slots (batch rows) it takes
        job = Job(work=work, emit=emit, timeout_s=timeout_s, label=label, size=size)
        self.job = worker.submit(job)

    def cancel(self) -> None:
        """Stop the job now: it ends as a time limit ends it (its last events, then the end)."""
        self._worker.cancel(self.job)

    async def __aiter__(self) -> AsyncIterator[Any]:
        try:
            while True:
                item = await self._queue.get()
                if item is END:
                    return
                yield item
        finally:
            self._worker.cancel(self.job)

    async def collect(self, is_disconnected: Callable[[], Any]) -> list[Any]:
        """All items (non-streaming responses); cancel if ``is_disconnected()`` turns true."""

        async def watch() -> None:
            while not await is_disconnected():
                await asyncio.sleep(0.25)
            self._worker.cancel(self.job)

        watcher = asyncio.create_task(watch())
        try:
            return [item async for item in self]
        finally:
            watcher.cancel()
