"""The worker queue with fake jobs (no model): order, bounds, cancellation, time limits."""

from __future__ import annotations

import asyncio
import threading
import time

from mlx_entropix.server.worker import END, Job, JobFailed, JobStream, QueueFullError, Worker

import pytest


def counting(n: int, delay: float = 0.0, log: list | None = None, name: str = ""):
    """A fake generation: n items, polling should_stop before each like generate does."""

    def work(resource, should_stop):
        for i in range(n):
            if should_stop():
                yield ("cancelled", i)
                return
            if log is not None:
                log.append((name, i, threading.current_thread().name))
            time.sleep(delay)
            yield ("token", i)
        yield ("done", n)

    return work


def collect_job(worker: Worker, work, timeout_s: float = 60.0) -> tuple[Job, list, threading.Event]:
    items: list = []
    ended = threading.Event()

    def emit(item):
        if item is END:
            ended.set()
        else:
            items.append(item)

    job = worker.submit(Job(work=work, emit=emit, timeout_s=timeout_s))
    return job, items, ended


@pytest.fixture
def worker():
    w = Worker(lambda: "resource", max_pending=2, retry_after_s=3).start()
    assert w.wait_ready(5) == "resource"
    yield w
    w.close()


def test_load_error_is_reraised():
    w = Worker(lambda: (_ for _ in ()).throw(RuntimeError("bad weights"))).start()
    with pytest.raises(RuntimeError, match="bad weights"):
        w.wait_ready(5)


def test_fifo_on_one_thread():
    worker = Worker(lambda: "resource", max_pending=8).start()
    worker.wait_ready(5)
    log: list = []
    jobs = [collect_job(worker, counting(3, 0.01, log, name)) for name in "abcde"]
    for _, items, ended in jobs:
        assert ended.wait(10)
        assert items[-1] == ("done", 3)
    assert [entry[0] for entry in log] == [c for c in "abcde" for _ in range(3)]  # in order
    assert {entry[2] for entry in log} == {"mlx-worker"}  # all on the one model thread
    assert worker.status()["served"] == 5
    worker.close()


def test_full_queue_raises_with_retry_after(worker):
    gate = threading.Event()

    def blocked(resource, should_stop):
        gate.wait(10)
        yield "x"

    first = collect_job(worker, blocked)
    deadline = time.monotonic() + 5
    while not worker.status()["running"] and time.monotonic() < deadline:
        time.sleep(0.01)
    collect_job(worker, counting(1))
    collect_job(worker, counting(1))  # max_pending=2 waiting behind the running job
    with pytest.raises(QueueFullError) as info:
        collect_job(worker, counting(1))
    assert info.value.retry_after >= 1
    gate.set()
    assert first[2].wait(5)


def test_cancel_running_stops_within_one_item(worker):
    job, items, ended = collect_job(worker, counting(1000, 0.005))
    while len(items) < 3:
        time.sleep(0.005)
    worker.cancel(job)
    assert ended.wait(5)
    assert items[-1][0] == "cancelled"
    assert job.items_after_cancel <= 2  # at most the item in flight, then the final one
    assert worker.status()["last_job"]["status"] == "cancelled"
    # The next job is served.
    _, items2, ended2 = collect_job(worker, counting(2))
    assert ended2.wait(5) and items2[-1] == ("done", 2)


def test_cancel_waiting_job_frees_its_place(worker):
    gate = threading.Event()

    def blocked(resource, should_stop):
        gate.wait(10)
        yield "x"

    collect_job(worker, blocked)
    time.sleep(0.05)
    waiting, items, ended = collect_job(worker, counting(1))
    collect_job(worker, counting(1))
    worker.cancel(waiting)
    assert ended.wait(1) and items == []  # dropped: never ran
    collect_job(worker, counting(1))  # its place is free again
    gate.set()


def test_time_limit(worker):
    job, items, ended = collect_job(worker, counting(1000, 0.01), timeout_s=0.1)
    assert ended.wait(5)
    assert job.timed_out and items[-1][0] == "cancelled"


def test_failing_work_reports_and_worker_survives(worker):
    def broken(resource, should_stop):
        yield 1
        raise ValueError("boom")

    _, items, ended = collect_job(worker, broken)
    assert ended.wait(5)
    assert items[0] == 1 and isinstance(items[1], JobFailed)
    _, items2, ended2 = collect_job(worker, counting(1))
    assert ended2.wait(5) and items2 == [("token", 0), ("done", 1)]


def test_jobstream_bridges_and_cancels_on_early_exit(worker):
    async def main():
        stream = JobStream(worker, counting(1000, 0.005), timeout_s=60)
        got = []
        async for item in stream:
            got.append(item)
            if len(got) == 3:
                break  # like a client disconnect: the generator is closed
        # aclose ran the finally: the job is cancelled, the worker frees up.
        for _ in range(200):
            if not worker.status()["running"]:
                break
            await asyncio.sleep(0.01)
        return got, stream.job

    got, job = asyncio.run(main())
    assert got == [("token", 0), ("token", 1), ("token", 2)]
    assert job.cancelled and job.status == "cancelled"
    assert job.items_after_cancel <= 2


def test_close_ends_waiting_streams():
    w = Worker(lambda: None, max_pending=4).start()
    w.wait_ready(5)
    gate = threading.Event()

    def blocked(resource, should_stop):
        while not should_stop():
            gate.wait(0.01)
        yield "stopped"

    _, items1, ended1 = collect_job(w, blocked)
    _, items2, ended2 = collect_job(w, counting(1))
    w.close()
    assert ended1.wait(5) and ended2.wait(5)
    assert items2 == []
