"""The worker queue with fake jobs (no model): order, bounds, cancellation, time limits."""

from __future__ import annotations

import asyncio
import threading
import time

from mlx_entropix.server.worker import (
    END,
    IDLE,
    Job,
    JobFailed,
    JobStream,
    QueueFullError,
    Worker,
)

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


def collect_job(
    worker: Worker, work, timeout_s: float = 60.0, size: int = 1
) -> tuple[Job, list, threading.Event]:
    items: list = []
    ended = threading.Event()

    def emit(item):
        if item is END:
            ended.set()
        else:
            items.append(item)

    job = worker.submit(Job(work=work, emit=emit, timeout_s=timeout_s, size=size))
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


def test_close_closes_the_resource_in_its_thread_after_the_last_job():
    """The engine's close (under mlx.launch: "followers, exit") runs on the model thread, after
    the running job has ended; a failing close does not break the shutdown."""
    events: list = []

    class Resource:
        def close(self):
            events.append(("close", threading.current_thread().name))
            raise RuntimeError("a follower is gone")

    def work(resource, should_stop):
        while not should_stop():
            yield "token"
            time.sleep(0.01)
        events.append(("job ended", threading.current_thread().name))
        yield "stopped"

    w = Worker(Resource).start()
    w.wait_ready(5)
    _, items, ended = collect_job(w, work)
    while not items:
        time.sleep(0.01)
    w.close()
    assert ended.wait(5)
    assert events == [("job ended", "mlx-worker"), ("close", "mlx-worker")]


# ---------------------------------------------------------------------- several jobs at once
# Jobs submitted before start() are all pending when the thread takes its first round, so the
# interleaving is deterministic.


def idle_until_stopped(resource, should_stop):
    """Waits on something shared (IDLE) until cancelled, then says so."""
    while not should_stop():
        time.sleep(0.001)
        yield IDLE
    yield "stopped"


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def test_jobs_interleave_round_robin_on_one_thread():
    w = Worker(lambda: None, max_running=3)
    log: list = []
    jobs = [collect_job(w, counting(3, 0, log, name)) for name in "abc"]
    w.start()
    for _, items, ended in jobs:
        assert ended.wait(5) and items[-1] == ("done", 3)
    assert [name + str(i) for name, i, _ in log] == "a0 b0 c0 a1 b1 c1 a2 b2 c2".split()
    assert {thread for _, _, thread in log} == {"mlx-worker"}
    assert w.status()["served"] == 3
    w.close()


def test_fourth_job_waits_for_a_free_slot():
    w = Worker(lambda: None, max_running=3)
    log: list = []
    a, b, c, d = (
        collect_job(w, counting(n, 0, log, name))
        for name, n in zip("abcd", (1, 5, 5, 2), strict=True)
    )
    w.start()
    assert all(ended.wait(5) for _, _, ended in (a, b, c, d))
    # d joins at the round after a ended, then runs alongside b and c.
    assert [name + str(i) for name, i, _ in log] == (
        "a0 b0 c0 b1 c1 b2 c2 b3 c3 d0 b4 c4 d1".split()
    )
    assert d[0].started_at >= a[0].ended_at
    w.close()


def test_big_job_waits_for_its_slots_and_is_not_overtaken():
    w = Worker(lambda: None, max_running=3)
    log: list = []
    a = collect_job(w, counting(3, 0, log, "a"))
    b = collect_job(w, counting(6, 0, log, "b"))
    big = collect_job(w, counting(1, 0, log, "big"), size=2)
    small = collect_job(w, counting(1, 0, log, "small"))  # it would fit beside a and b: it waits
    w.start()
    assert all(ended.wait(5) for _, _, ended in (a, b, big, small))
    assert [name + str(i) for name, i, _ in log] == (
        "a0 b0 a1 b1 a2 b2 b3 b4 b5 big0 small0".split()
    )
    assert big[0].started_at >= a[0].ended_at and small[0].started_at >= big[0].ended_at
    w.close()


def test_oversized_job_runs_alone():
    w = Worker(lambda: None, max_running=2)
    log: list = []
    huge = collect_job(w, counting(2, 0, log, "huge"), size=5)
    after = collect_job(w, counting(1, 0, log, "after"))
    w.start()
    assert huge[2].wait(5) and after[2].wait(5)
    assert huge[1][-1] == ("done", 2)
    assert [name for name, _, _ in log] == ["huge", "huge", "after"]
    w.close()


def test_idle_items_are_neither_emitted_nor_counted():
    def waits(resource, should_stop):
        yield IDLE
        yield "x"
        yield IDLE
        yield IDLE
        yield "y"

    w = Worker(lambda: None, max_running=2)
    job, items, ended = collect_job(w, waits)
    other, other_items, other_ended = collect_job(w, counting(2))
    w.start()
    assert ended.wait(5) and other_ended.wait(5)
    assert items == ["x", "y"] and job.items == 2
    assert other_items == [("token", 0), ("token", 1), ("done", 2)]
    w.close()


def test_cancel_one_running_job_others_continue():
    w = Worker(lambda: None, max_running=3).start()
    w.wait_ready(5)
    jobs = [collect_job(w, counting(10_000, 0.001)) for _ in range(3)]
    assert wait_for(lambda: all(len(items) >= 3 for _, items, _ in jobs))
    status = w.status()
    assert status["running"] and status["running_jobs"] == 3 and status["max_running"] == 3
    (a, a_items, a_ended), (b, b_items, b_ended), (c, c_items, c_ended) = jobs
    w.cancel(b)
    assert b_ended.wait(5)
    assert b_items[-1][0] == "cancelled" and b.items_after_cancel <= 2
    assert not a_ended.is_set() and not c_ended.is_set()
    seen = len(a_items), len(c_items)
    assert wait_for(lambda: len(a_items) > seen[0] + 3 and len(c_items) > seen[1] + 3)
    assert w.status()["running_jobs"] == 2
    w.close()
    assert a_ended.wait(5) and c_ended.wait(5)
    assert a.status == c.status == "cancelled" and w.status()["cancelled"] == 3


def test_failing_job_does_not_disturb_the_others():
    def broken(resource, should_stop):
        yield 1
        yield 2
        raise ValueError("boom")

    def broken_at_start(resource, should_stop):  # not a generator: raises when called
        raise RuntimeError("bad request")

    w = Worker(lambda: None, max_running=4)
    _, bad_items, bad_ended = collect_job(w, broken)
    _, early_items, early_ended = collect_job(w, broken_at_start)
    good = [collect_job(w, counting(5)) for _ in range(2)]
    w.start()
    assert bad_ended.wait(5) and early_ended.wait(5)
    assert bad_items[:2] == [1, 2] and isinstance(bad_items[2], JobFailed) and len(bad_items) == 3
    assert len(early_items) == 1 and isinstance(early_items[0].error, RuntimeError)
    for _, items, ended in good:
        assert ended.wait(5) and items[-1] == ("done", 5) and len(items) == 6
    assert w.status()["served"] == 4
    w.close()


def test_time_limit_counts_from_each_jobs_own_start():
    w = Worker(lambda: None, max_running=2)
    collect_job(w, counting(10, 0.025), size=2)  # holds both slots for ~0.25 s
    limited, items, ended = collect_job(w, counting(10_000, 0.01), timeout_s=0.15)
    free, free_items, free_ended = collect_job(w, counting(20, 0.002))
    w.start()
    assert ended.wait(5) and free_ended.wait(5)
    assert limited.started_at - limited.queued_at >= 0.2  # waited longer than its limit...
    assert limited.timed_out and items[-1][0] == "cancelled"
    assert items[0] == ("token", 0) and len(items) >= 3  # ...and still ran for its own 0.15 s
    assert not free.timed_out and free_items[-1] == ("done", 20)
    assert free.ended_at > limited.ended_at  # outlived the neighbour's time limit
    w.close()


def test_close_cancels_running_and_pending_jobs():
    w = Worker(lambda: None, max_running=2).start()
    w.wait_ready(5)
    running = [collect_job(w, idle_until_stopped) for _ in range(2)]
    pending = collect_job(w, counting(1))
    assert wait_for(lambda: w.status()["running_jobs"] == 2 and w.status()["pending"] == 1)
    w.close()
    assert all(ended.wait(5) for _, _, ended in (*running, pending))
    assert [items for _, items, _ in running] == [["stopped"], ["stopped"]]
    assert pending[1] == [] and pending[0].status == "cancelled"
    assert w.stopped  # every job ended, the resource closed (the thread stays, parked)


def test_retry_after_shares_the_wait_among_slots():
    for max_running, expected in ((1, 12), (4, 3)):
        w = Worker(lambda: None, max_pending=8, max_running=max_running)  # not started
        w._durations.extend([3.0, 3.0])
        for _ in range(3):
            collect_job(w, counting(1))
        assert w._retry_after() == expected  # 3 s x (3 pending + 1) / slots


def test_a_fork_request_takes_a_slot_per_row_it_decodes():
    """A fork request decodes its branches as rows of the shared batch (``fork_branches``, or
    the answer forks' new branches): its job's size, which the worker's ``max_running`` counts,
    is what it occupies while exploring, not one slot (``JobStream`` takes ``work.size``)."""
    from mlx_entropix.config import SamplerConfig
    from mlx_entropix.server.engine import generation_work

    def size(modes: list[str], cfg: SamplerConfig, n: int = 1) -> int:
        return generation_work([5, 6, 7], modes, config=cfg, max_tokens=4, seed=0, stop=(),
                               top_logprobs=5, n=n).size  # type: ignore[attr-defined]  # fmt: skip

    cfg = SamplerConfig(fork_branches=4)
    assert size(["entropix"], cfg) == 1 and size(["greedy"], cfg, n=3) == 3
    assert size(["fork"], cfg) == 4
    assert size(["entropix", "fork"], cfg) == 5  # the compare view: each row as it runs
    at_answer = {"fork_at_answer": True, "fork_answer_kind": "numeric",
                 "fork_answer_branches": 3, "fork_answer_sites": "each"}  # fmt: skip
    answer = cfg.model_copy(update=at_answer)
    assert size(["fork"], answer) == 4 * 2 * 3  # every branch re-forked at two sites, 3 each
    kept = answer.model_copy(update={"fork_answer_from": "kept"})
    assert size(["fork"], kept) == 6  # only the kept branch re-forks (2 sites x 3 > 4 branches)


def test_process_with_a_closed_engine_worker_exits_cleanly():
    """The server's shutdown (engine loaded and used in the worker thread, then closed) exits
    with status 0: a model thread that exited at interpreter shutdown aborted the process in
    MLX 0.32's thread-local compile cache ("terminate called without an active exception")."""
    import subprocess
    import sys

    code = (
        "import mlx_entropix\n"
        "from mlx_entropix.server.main import parse_args, settings_from\n"
        "from mlx_entropix.server.app import make_worker\n"
        "w = make_worker(settings_from(parse_args([])))\n"
        "engine = w.start().wait_ready()\n"
        "list(engine.lm.tokenizer.encode('warm'))\n"
        "w.close()\n"
        "assert w.stopped\n"
    )
    for _ in range(2):  # the abort raced the interpreter's exit: it came in 5 of 6 runs
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=300)  # fmt: skip
        assert run.returncode == 0 and "terminate called" not in run.stderr, run.stderr[-2000:]


def test_ctrl_c_ends_open_streams_with_their_last_events():
    """Ctrl-C while streams are open: each stream ends as a time limit ends it (the /api
    ``done`` event, finish_reason "cancelled"; OpenAI's last chunk and ``[DONE]``) and the
    server exits 0 at once. sse_starlette cancelled the streams' tasks instead: the clients'
    streams were cut mid-body and uvicorn logged "ASGI callable returned without completing
    response"."""
    import json
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "mlx_server.py", "--port", str(port), "--ui", "", "--log-level",
           "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=root, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=60) as c:
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, "no server"
                try:
                    if c.get("/api/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.5)
            prompt = [{"role": "user", "content": "Write a long essay"}]
            with (
                c.stream("POST", "/api/generate", json={"messages": prompt, "max_tokens": 400})
                as api,
                c.stream("POST", "/v1/chat/completions",
                         json={"messages": prompt, "max_tokens": 400, "stream": True}) as v1,
            ):  # fmt: skip
                api_lines, v1_lines = api.iter_lines(), v1.iter_lines()
                assert next(line for line in api_lines if line.startswith("data:"))
                assert next(line for line in v1_lines if line.startswith("data:"))
                proc.send_signal(signal.SIGINT)
                api_rest = [line for line in api_lines if line.startswith("data:")]
                v1_rest = [line for line in v1_lines if line.startswith("data:")]
        assert proc.wait(60) == 0
        stderr = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    done = json.loads(api_rest[-1].removeprefix("data:"))
    assert done["type"] == "done" and done["finish_reason"] == "cancelled"
    assert done["generated_tokens"] < 400
    assert v1_rest[-1] == "data: [DONE]"
    assert json.loads(v1_rest[-2].removeprefix("data:"))["choices"][0]["finish_reason"]
    assert "without completing response" not in stderr, stderr[-2000:]
