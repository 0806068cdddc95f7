"""Tensor parallel over MLX's distributed engine: the embedded model split over 2 and 3 local
ranks (mlx.launch, ring backend on 127.0.0.1) gives the single process's tokens and six
metrics; sizes that do not divide fail with a clear error.

2 ranks: the MLP is split (1536 / 2) and attention stays whole (3 kv heads). 3 ranks: both are
split (one kv head and its 3 query heads per rank), so the last layer's per-head statistics
are combined across ranks (metrics.py, ``_sharded_attention_metrics``).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate
from mlx_entropix.errors import ModelLoadError
from mlx_entropix.events import METRIC_NAMES
from mlx_entropix.runtime.distributed import ShardingError, launch_status, plan_sharding
from mlx_entropix.uncertainty.metrics import _sharded_attention_metrics, attention_metrics

import mlx.core as mx
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = Path(sys.executable).with_name("mlx.launch")
PROMPT = "Name a colour."
MAX_TOKENS, SEED, TOL = 5, 7, 1e-4
TIMEOUT_S = 420  # model load on every rank, on a small shared CPU


def _free_ports(n: int) -> int:
    """A starting port with ``n`` free ports after it (the ring listens on port + rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + n >= 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(start, start + n):
                socks.append(socket.socket())
                socks[-1].bind(("127.0.0.1", p))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.skip("no run of free loopback ports for the ring backend")


def _launch(n: int, *command: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """The launch, its returncode its ranks' (``launch_status``: mlx.launch's own is 0)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(LAUNCH), "-n", str(n), "--backend", "ring", "--starting-port",
           str(_free_ports(n)), "--python", sys.executable, *command]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    done.returncode = done.returncode or launch_status(done.stderr)
    return done


def test_launch_status_reads_the_ranks_failures():
    warn = "\x1b[33m[WARN] Node with rank {} exited with code {} \x1b[0m\n"
    assert launch_status("2.0\n2.0\n") == 0  # every rank completed (no warning)
    assert launch_status(warn.format(0, 2) + warn.format(1, -15)) == 2  # rank 0's own error
    assert launch_status(warn.format(1, -15) + warn.format(0, 1)) == 1
    assert launch_status("[WARN] Node with rank 1 was killed\n") == -9


def test_a_failing_rank_fails_the_launch(two_local_ranks):
    """mlx.launch exits 0 here (MLX's launcher); the ranks' status is 2, their error one line."""
    done = _launch(2, "mlx_main.py", "--max-tokens", "0", timeout=120)
    assert done.returncode == 2, done.stderr
    # Every rank checks the flags at once: the first to fail ends the launch (the launcher then
    # stops the others), so the line may be rank 0's or another's.
    error = r"mlx_main\.py( \(rank \d+\))?: error: --max-tokens must be at least 1 \(got 0\)"
    assert re.search(error, done.stderr), done.stderr


@pytest.fixture(scope="module")
def two_local_ranks(tmp_path_factory) -> None:
    """Skip (with the reason) where this platform cannot run two local ranks at all."""
    if not LAUNCH.exists():
        pytest.skip(f"mlx.launch is not installed next to {sys.executable}")
    if not mx.distributed.is_available():
        pytest.skip("this MLX build has no distributed backend")
    probe = tmp_path_factory.mktemp("probe") / "probe.py"
    probe.write_text(
        "import mlx.core as mx\ng = mx.distributed.init()\n"
        "print(mx.distributed.all_sum(mx.array([1.0]), group=g).item())\n"
    )
    try:
        done = _launch(2, str(probe), timeout=120)
    except subprocess.TimeoutExpired:
        pytest.skip("two local ranks (mlx.launch, ring on 127.0.0.1) did not connect in 120 s")
    if done.returncode != 0 or done.stdout.split() != ["2.0", "2.0"]:
        pytest.skip(f"this platform cannot run two local ranks: {done.stderr.strip()[-300:]}")


def _single(lm, mode: str) -> list[dict]:
    events = generate(lm, PROMPT, mode=mode, max_tokens=MAX_TOKENS, seed=SEED, top_logprobs=0)
    return [e.model_dump() for e in events if e.type == "token"]


def _assert_same(got: list[dict], want: list[dict], where: str) -> None:
    assert [e["id"] for e in got] == [e["id"] for e in want], where
    for g, w in zip(got, want, strict=True):
        for name in METRIC_NAMES:
            assert g["metrics"][name] == pytest.approx(w["metrics"][name], abs=TOL), (
                f"{where}: token {g['index']} {name}"
            )


def test_two_ranks_match_one_process(embedded, two_local_ranks, tmp_path):
    out = tmp_path / "run"
    spec = {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "seed": SEED}
    done = _launch(2, str(ROOT / "tests" / "_dist_run.py"), str(out), json.dumps(spec))
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [json.loads(Path(f"{out}.rank{r}").read_text()) for r in range(2)]
    assert "MLP split (768 of 1536" in ranks[0]["plan"]
    assert "attention whole" in ranks[0]["plan"]
    # Each rank holds its half of the MLP (gate/up by output rows, down by input columns) and
    # the whole attention: the shapes and the sums of the slices of the unsplit weights.
    mlp = embedded.model.layers[0].mlp
    whole = {"gate_proj": (mlp.gate_proj.weight, 0), "up_proj": (mlp.up_proj.weight, 0),
             "down_proj": (mlp.down_proj.weight, 1)}  # fmt: skip
    for r, result in enumerate(ranks):
        held = result["weights"]
        for name, (w, axis) in whole.items():
            half = w.shape[axis] // 2
            part = w[r * half : (r + 1) * half] if axis == 0 else w[:, r * half : (r + 1) * half]
            assert held[f"mlp.{name}"]["shape"] == list(part.shape), (r, name)
            assert held[f"mlp.{name}"]["sum"] == pytest.approx(part.sum().item(), rel=1e-5)
        attn = embedded.model.layers[0].self_attn
        assert held["self_attn.q_proj"]["shape"] == list(attn.q_proj.weight.shape)
    for r, result in enumerate(ranks):
        for run in result["runs"]:
            tokens = [e for e in run["events"] if e["type"] == "token"]
            assert len(tokens) == MAX_TOKENS
            _assert_same(tokens, _single(embedded, run["mode"]), f"rank {r} {run['mode']}")


def test_three_ranks_split_heads_through_the_cli(embedded, two_local_ranks):
    """Every rank scores its 3 of the 9 heads; rank 0 alone prints (one DoneEvent)."""
    done = _launch(3, "mlx_main.py", "--json", "--input", PROMPT, "--max-tokens",
                   str(MAX_TOKENS), "--seed", str(SEED), "--top-logprobs", "0",
                   "--shard-attention", "shard")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sum(e["type"] == "done" for e in events) == 1, "only rank 0 prints"
    tokens = [e for e in events if e["type"] == "token"]
    _assert_same(tokens, _single(embedded, "entropix"), "3 ranks entropix")


def test_ctrl_c_stops_every_rank_of_the_cli_at_the_same_step(embedded, two_local_ranks, tmp_path):
    """Ctrl-C reaches the ranks at different moments (here rank 1 0.6 s before rank 0): rank
    0's decides, so both stop at the same step. A rank that stopped on its own would leave the
    other waiting in a collective (a hang, or a crash when the ring closes)."""
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port", str(_free_ports(2)),
           "--python", sys.executable, "mlx_main.py", "--json", "--input", "Tell a long story.",
           "--max-tokens", "400", "--greedy"]  # fmt: skip
    out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
    with out.open("w") as sink, err.open("w") as errors:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=errors,
                                start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while out.read_text().count('"type":"token"') < 3:
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.5)
        ranks = {_rank_of(pid): pid for pid in _children(proc.pid)}
        os.kill(ranks[1], signal.SIGINT)
        time.sleep(0.6)
        os.kill(ranks[0], signal.SIGINT)
        proc.wait(90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        pytest.fail("the ranks did not all stop after Ctrl-C:\n" + err.read_text()[-3000:])
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["finish_reason"] == "cancelled", events[-1]
    assert len(events) - 1 < 400
    assert "Traceback" not in err.read_text(), err.read_text()[-3000:]


def _rank_of(pid: int) -> int:
    """A launched process's rank (``MLX_RANK`` in its environment)."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in env if v.startswith(b"MLX_RANK=")).split(b"=")[1])


def test_sharded_head_statistics_equal_the_whole():
    """The combination formula itself, on a group of one (its collectives are the identity)."""
    scores = mx.random.normal((2, 9, 17), key=mx.random.key(0)) * 3
    group = mx.distributed.init()
    if group.size() != 1:
        pytest.skip("runs in a single process")
    whole = mx.stack(attention_metrics(scores), axis=-1)
    combined = mx.stack(_sharded_attention_metrics(scores, group), axis=-1)
    assert mx.allclose(whole, combined, atol=1e-5).item()


def test_sizes_that_do_not_divide_fail_clearly(embedded):
    # SmolLM2-135M: 9 query heads, 3 kv heads, MLP width 1536.
    assert not plan_sharding(9, 3, 1536, 2).attention  # attention kept whole on 2 ranks
    assert plan_sharding(9, 3, 1536, 3).heads_per_rank == 3
    with pytest.raises(ShardingError, match=r"intermediate_size 1536\) does not divide by 5"):
        plan_sharding(9, 3, 1536, 5)
    with pytest.raises(ShardingError, match="3 kv heads .9 query heads. do not divide by 2"):
        plan_sharding(9, 3, 1536, 2, attention="shard")

    class Ranks:  # what shard_model reads of a group before it splits anything
        def size(self) -> int:
            return 5

        def rank(self) -> int:
            return 0

    from mlx_entropix.io.load import load

    with pytest.raises(ModelLoadError, match="does not divide by 5"):
        load(None, group=Ranks())  # type: ignore[arg-type]


def test_single_process_models_are_not_sharded(embedded):
    assert embedded.info.sharding is None
    assert embedded.model.group is None and embedded.model.head_group is None


def _sse_events(response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]


def test_server_on_two_ranks(embedded, two_local_ranks, tmp_path):
    """Rank 0 serves, rank 1 replays its schedule: a cancelled stream leaves no rank behind in a
    collective, the compare view (two interleaved modes) matches one process, four requests at
    once are one batch and each its single-process tokens, and on Ctrl-C rank 0 shuts
    down and tells the follower to exit (which ignores the Ctrl-C itself): all exit cleanly."""
    import signal
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [str(LAUNCH), "-n", "2", "--backend", "ring", "--starting-port",
           str(_free_ports(2)), "--python", sys.executable, "mlx_server.py",
           "--port", str(port), "--ui", ""]  # fmt: skip
    log = tmp_path / "server.log"
    with log.open("w") as sink:  # a file, not a pipe: nobody drains a pipe while we wait
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=sink,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(2)
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
            long = {"prompt": "Tell a long story.", "max_tokens": 200, "seed": 1}
            with client.stream("POST", "/api/generate", json=long) as r:
                next(line for line in r.iter_lines() if line.startswith("data:"))
            body = {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "seed": SEED, "top_logprobs": 0}
            with client.stream("POST", "/api/compare", json=body) as r:
                events = _sse_events(r)
        for mode in ("entropix", "normal"):
            tokens = [e for e in events if e["type"] == "token" and e["mode"] == mode]
            _assert_same(tokens, _single(embedded, mode), f"server {mode}")
        _four_at_once(url, embedded)
        _prefix_reuse(url)
    finally:
        # Ctrl-C as a terminal sends it, to every rank, but not to the launcher: its main thread
        # can be interrupted holding a queue lock its other threads then wait on forever (a race
        # in mlx.launch's I/O loop, not ours). It exits by itself when the ranks have.
        ranks = _children(proc.pid)
        for pid in ranks:
            os.kill(pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            left = [pid for pid in ranks if _alive(pid)]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            pytest.fail(f"ranks {left} of {ranks} still running 60 s after Ctrl-C; log:\n"
                        + log.read_text()[-3000:])  # fmt: skip
    text = log.read_text()
    assert len(ranks) == 2, text[-3000:]
    # the follower left at rank 0's word (Engine.close), not because its connection broke
    assert "rank 1: rank 0 shuts down; exiting" in text, text[-3000:]
    assert proc.returncode == 0, text[-3000:]


def _four_at_once(url: str, lm) -> None:
    """Four requests at once, every kind (fork too): decoded together on both ranks (the
    worker runs them at once; the shared batch is the only path), each stream the single
    process's tokens (metrics to 1e-3: rows of a batch are not bitwise those alone
    on this BLAS)."""
    import threading
    import time

    import httpx

    asks = [("Name a fruit.", "entropix", 3), ("Name a colour.", "normal", 4),
            ("Count to five.", "greedy", 5), ("What is 2+3?", "fork", 6)]  # fmt: skip
    got: dict[int, list[dict]] = {}

    def ask(i: int) -> None:
        prompt, mode, seed = asks[i]
        body = {"prompt": prompt, "mode": mode, "max_tokens": 12, "seed": seed, "top_logprobs": 0}
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=TIMEOUT_S) as r:
            got[i] = [e for e in _sse_events(r) if e["type"] == "token"]

    assert httpx.get(f"{url}/api/info").json()["limits"]["batched_decoding"]
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    running = []
    while any(t.is_alive() for t in threads):
        running.append(httpx.get(f"{url}/api/health").json()["queue"]["running_jobs"])
        time.sleep(0.2)
    for t in threads:
        t.join(TIMEOUT_S)
    assert sorted(got) == list(range(len(asks)))
    assert max(running) >= 3, running  # jobs decoding at once (one batch: the only path)
    for i, (prompt, mode, seed) in enumerate(asks):
        events = generate(lm, prompt, mode=mode, max_tokens=12, seed=seed, top_logprobs=0)
        want = [e.model_dump() for e in events if e.type == "token"]
        assert [e["id"] for e in got[i]] == [e["id"] for e in want], mode
        for g, w in zip(got[i], want, strict=True):
            for name in METRIC_NAMES:
                assert g["metrics"][name] == pytest.approx(w["metrics"][name], abs=1e-3), mode


def _prefix_reuse(url: str) -> None:
    """The prefix cache under ``mlx.launch``: every rank keeps the same blocks (rank 0 says
    when to start and when to fill while idle), so a repeated long prompt reuses its blocks
    with the same bits, and the next turn finds the previous answer filled in too."""
    import time

    import httpx

    long = " ".join(f"Item {i} is a {('red', 'green', 'blue')[i % 3]} box." for i in range(60))
    turn = [{"role": "user", "content": long + " Which item is the first blue box?"}]

    def ask(messages: list[dict]) -> dict:
        body = {"messages": messages, "mode": "greedy", "max_tokens": 4, "seed": 0,
                "top_logprobs": 0}  # fmt: skip
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=TIMEOUT_S) as r:
            events = _sse_events(r)
        tokens = [{k: v for k, v in e.items() if k != "elapsed_s"} for e in events
                  if e["type"] == "token"]  # fmt: skip
        return {"tokens": tokens, "done": events[-1]}

    first, again = ask(turn), ask(turn)
    # (the first finds only the chat template's opening turn cached, from earlier requests)
    assert again["done"]["cached_tokens"] >= first["done"]["cached_tokens"] + 256
    assert again["tokens"] == first["tokens"]
    answer = "".join(e["text"] for e in first["tokens"])
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/api/info").json()["prefix_cache"]["filling"]:  # idle: every rank
        assert time.monotonic() < deadline, "the idle filling did not end"
        time.sleep(0.2)
    follow = ask([*turn, {"role": "assistant", "content": answer},
                  {"role": "user", "content": "Why?"}])  # fmt: skip
    assert follow["done"]["cached_tokens"] > again["done"]["cached_tokens"], follow["done"]


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the launcher's ranks)."""
    try:
        done = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        return sorted(int(x) for x in done.stdout.split())
    except FileNotFoundError:  # no procps: read /proc (Linux)
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
        return sorted(found)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
