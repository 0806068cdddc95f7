"""The real server on a loopback port, over HTTP: SSE streams, errors, queueing, disconnects."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.engine.generate import generate, prepare_prompt
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer, iter_sse, read_sse, wait_idle

PROMPT = "Name three colours."


@pytest.fixture(scope="module")
def live():
    settings = ServerSettings(max_queue=16, max_tokens_limit=512, ui_dir=None, ping_s=15)
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=120) as c:
        yield c


def reference(lm, prompt, mode, seed, max_tokens, **kw):
    """What the CLI gives: the engine called in-process with the same arguments."""
    events = list(generate(lm, prompt, mode=mode, seed=seed, max_tokens=max_tokens, **kw))
    return [e.id for e in events[:-1]], events[-1].text


def stream_generate(client: httpx.Client, body: dict, path: str = "/api/generate"):
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return read_sse(r)


def test_health_info_config_prompts(client):
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["queue"]["max_pending"] == 16
    info = client.get("/api/info").json()
    assert info["model"]["context_length"] > 0 and info["runtime"]["backend"] in (
        "cpu",
        "metal",
        "cuda",
    )
    config = client.get("/api/config").json()
    assert "temperature" in config["defaults"]
    assert set(config["states"]) == {"flowing", "treading", "exploring", "resampling", "adaptive"}
    prompts = client.get("/api/prompts").json()
    assert prompts and {"name", "category", "prompt", "answer"} <= set(prompts[0])
    page = client.get("/")
    assert page.status_code == 200 and "mlx-entropix" in page.text  # no UI built: a hint page
    assert "access-control-allow-origin" not in client.get("/api/health").headers


@pytest.mark.parametrize(
    ("mode", "seed", "extra"),
    [("entropix", 7, {}), ("normal", 3, {"system": "Be brief."}), ("greedy", None, {})],
)
def test_sse_stream_equals_engine_output(client, embedded, mode, seed, extra):
    body = {"prompt": PROMPT, "mode": mode, "max_tokens": 12, "seed": seed, **extra}
    sse = stream_generate(client, body)
    names = [name for name, _ in sse.events]
    assert names[-1] == "done" and set(names[:-1]) == {"token"}
    tokens, done = sse.json("token"), sse.json("done")[0]
    assert [t["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == done["text"]
    assert done["generated_tokens"] == len(tokens) and done["mode"] == mode
    assert all(len(t["top"]) == 5 and t["state"] and t["metrics"] for t in tokens)
    ids, text = reference(embedded, PROMPT, mode, done["seed"], 12, system=extra.get("system"))
    assert [t["id"] for t in tokens] == ids
    assert done["text"] == text


def test_messages_sampler_overrides_and_stop(client, embedded):
    messages = [{"role": "user", "content": "Count from one to ten in words."}]
    body = {
        "messages": messages,
        "mode": "normal",
        "seed": 5,
        "max_tokens": 16,
        "sampler": {"temperature": 0.3, "top_k": 5},
        "stop": [","],
        "top_logprobs": 0,
    }
    sse = stream_generate(client, body)
    tokens, done = sse.json("token"), sse.json("done")[0]
    assert all(t["top"] == [] for t in tokens)
    assert all(t["params"]["top_k"] == 5 for t in tokens)
    config = embedded.default_config.merged({"temperature": 0.3, "top_k": 5})
    _, text = reference(embedded, messages, "normal", 5, 16, config=config, stop=[","])
    assert "".join(t["text"] for t in tokens) == done["text"] == text
    if done["finish_reason"] == "stop_string":
        assert "," not in done["text"]


def test_chat_history_with_system(client, embedded):
    """The UI's conversation mode: the whole history as messages, the system prompt apart."""
    history = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Why that one?"},
    ]
    system = {"role": "system", "content": "Be brief."}
    body = {"messages": history, "system": "Be brief.", "mode": "greedy", "max_tokens": 6}
    sse = stream_generate(client, body)
    tokens, done = sse.json("token"), sse.json("done")[0]
    ids, text = reference(embedded, [system, *history], "greedy", None, 6)
    assert [t["id"] for t in tokens] == ids and done["text"] == text
    # The template saw the system message and every turn, once.
    assert done["prompt_tokens"] == len(prepare_prompt(embedded, [system, *history]))
    # (SmolLM2's template puts in a default system prompt of its own when there is none.)
    assert done["prompt_tokens"] != len(prepare_prompt(embedded, history))
    # A history that starts with its own system message keeps it (not two system messages).
    again = stream_generate(client, {**body, "messages": [system, *history]}).json("done")[0]
    assert again["prompt_tokens"] == done["prompt_tokens"] and again["text"] == text


def test_compare_streams_modes_interleaved(client, embedded):
    body = {"prompt": PROMPT, "max_tokens": 6, "seed": 11}
    sse = stream_generate(client, body, "/api/compare")
    events = sse.json()
    modes = [e["mode"] for e in events if e["type"] == "token"]
    assert modes[:2] == ["entropix", "normal"]  # token by token, not one after the other
    dones = [e for e in events if e["type"] == "done"]
    assert sorted(d["mode"] for d in dones) == ["entropix", "normal"]
    for done in dones:
        mine = [e for e in events if e["type"] == "token" and e["mode"] == done["mode"]]
        ids, text = reference(embedded, PROMPT, done["mode"], 11, 6)
        assert [e["id"] for e in mine] == ids and done["text"] == text
        assert done["seed"] == 11


BAD_REQUESTS = [
    (b'{"prompt": "hi", ', 400, "malformed JSON"),
    (b"not json at all", 400, "malformed JSON"),
    ({"prompt": 123}, 422, "prompt"),
    ({"prompt": "hi", "max_tokens": "many"}, 422, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 0}, 422, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 100_000}, 422, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 1000}, 400, "limit of 512"),  # the server's own cap
    ({"prompt": "hi", "mode": "creative"}, 422, "mode"),
    ({"prompt": "hi", "top_logprobs": 21}, 422, "top_logprobs"),
    ({"prompt": "hi", "seed": -1}, 422, "seed"),
    ({"prompt": "hi", "messages": [{"role": "user", "content": "x"}]}, 422, "exactly one"),
    ({}, 422, "exactly one"),
    ({"prompt": "hi", "temperature": 0.5}, 422, "temperature"),  # unknown field
    ({"prompt": "hi", "sampler": {"top_p": 0}}, 422, "top_p"),
    ({"prompt": "hi", "sampler": {"nope": 1}}, 422, "nope"),
    ({"prompt": "hi", "preset": "loud"}, 422, "unknown preset 'loud' (choose from precise"),
    ({"messages": [{"role": "robot", "content": "x"}]}, 422, "role"),
    ({"prompt": "   "}, 400, "empty"),
    ({"prompt": "hi", "stop": [""]}, 422, "stop"),
    ({"prompt": "word " * 9000}, 400, "context"),
]


@pytest.mark.parametrize(("body", "status", "needle"), BAD_REQUESTS)
def test_bad_requests_get_one_clear_message(client, body, status, needle):
    if isinstance(body, bytes):
        r = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
    else:
        r = client.post("/api/generate", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and needle.lower() in detail.lower()
    assert "Traceback" not in r.text and "\n" not in detail


def test_presets_are_listed_and_served(client):
    presets = client.get("/api/config").json()["presets"]
    assert {"precise", "balanced", "creative"} <= set(presets)
    assert all(p["summary"] and p["overrides"] for p in presets.values())
    body = {"prompt": "hi", "max_tokens": 2, "seed": 1, "preset": "creative", "mode": "entropix"}
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200 and "event: done" in r.text


def test_compare_rejects_repeated_modes(client):
    r = client.post("/api/compare", json={"prompt": "hi", "modes": ["greedy", "greedy"]})
    assert r.status_code == 422 and "repeat" in r.json()["detail"]


def test_body_size_cap(client, live):
    big = {"prompt": "x" * (live.settings.max_body_bytes + 10)}
    r = client.post("/api/generate", json=big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"prompt": "'
        for _ in range(live.settings.max_body_bytes // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    r = client.post("/api/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_eight_concurrent_streams_are_each_correct(live, embedded):
    prompts = [
        f"Write a word that rhymes with {w}." for w in "cat dog sun tree car hat bee sky".split()
    ]
    modes = ["entropix", "normal"] * 4

    def one(i: int) -> tuple[list[int], str, str]:
        body = {"prompt": prompts[i], "mode": modes[i], "seed": 100 + i, "max_tokens": 8}
        with httpx.Client(base_url=live.url, timeout=300) as c:
            sse = stream_generate(c, body)
        tokens, done = sse.json("token"), sse.json("done")[0]
        return [t["id"] for t in tokens], "".join(t["text"] for t in tokens), done["text"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    for i, (ids, joined, text) in enumerate(results):
        ref_ids, ref_text = reference(embedded, prompts[i], modes[i], 100 + i, 8)
        assert ids == ref_ids and joined == text == ref_text, f"stream {i} differs"


def test_disconnect_stops_generation_and_next_request_is_served(live, client):
    wait_idle(live)
    before = live.worker.status()["cancelled"]
    body = {"prompt": "Tell me a long story about a dragon.", "mode": "greedy", "max_tokens": 400}
    seen = 0
    with httpx.Client(base_url=live.url, timeout=60) as c:
        with c.stream("POST", "/api/generate", json=body) as r:
            for item in iter_sse(r):
                if isinstance(item, tuple) and item[0] == "token":
                    seen += 1
                    if seen == 3:
                        break  # leaving the block closes the connection mid-stream
    status = wait_idle(live)
    job = status["last_job"]
    assert status["cancelled"] == before + 1 and job["status"] == "cancelled"
    assert job["items"] < 400
    assert job["items_after_cancel"] <= 2  # at most the token in flight, then `done`
    sse = stream_generate(client, {"prompt": "Hi", "max_tokens": 3, "seed": 1})
    assert sse.events[-1][0] == "done"


def _start_long_stream(live: LiveServer, started: threading.Event, stop: threading.Event):
    """A stream in a thread that holds the worker until ``stop`` is set."""

    def run():
        body = {"prompt": "Tell me a long story.", "mode": "greedy", "max_tokens": 500}
        with httpx.Client(base_url=live.url, timeout=60) as c:
            with c.stream("POST", "/api/generate", json=body) as r:
                for _ in iter_sse(r):
                    started.set()
                    if stop.is_set():
                        break

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60)
    return thread


def test_full_queue_answers_503_with_retry_after(live, client):
    wait_idle(live)
    started, stop = threading.Event(), threading.Event()
    live.worker.max_pending = 1
    try:
        runner = _start_long_stream(live, started, stop)
        waiting = []

        def queued():
            with httpx.Client(base_url=live.url, timeout=60) as c:
                with c.stream("POST", "/api/generate", json={"prompt": "Hi", "max_tokens": 2}) as r:
                    waiting.append(r.status_code)
                    read_sse(r)

        second = threading.Thread(target=queued, daemon=True)
        second.start()
        deadline = time.monotonic() + 30
        while live.worker.status()["pending"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        r = client.post("/api/generate", json={"prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["detail"]
        r = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert r.status_code == 503 and r.json()["error"]["message"]
    finally:
        stop.set()
        live.worker.max_pending = 16
    runner.join(30)
    second.join(30)
    assert waiting == [200]  # the queued request was served after the long one stopped


def test_idle_stream_gets_keepalive_pings(live):
    """A request waiting in the queue is kept alive with SSE comments."""
    wait_idle(live)
    started, stop = threading.Event(), threading.Event()
    live.settings.ping_s = 0.2
    try:
        runner = _start_long_stream(live, started, stop)
        with httpx.Client(base_url=live.url, timeout=60) as c:
            with c.stream("POST", "/api/generate", json={"prompt": "Hi", "max_tokens": 2}) as r:
                items = iter_sse(r)
                first = next(items)
                assert isinstance(first, str) and first.startswith("ping")
                stop.set()
                rest = list(items)
        assert [i for i in rest if isinstance(i, tuple)][-1][0] == "done"
    finally:
        stop.set()
        live.settings.ping_s = 15
    runner.join(30)


def test_request_time_limit(live, client):
    wait_idle(live)
    live.settings.request_timeout_s = 0.3
    try:
        body = {"prompt": "Tell me a long story.", "mode": "greedy", "max_tokens": 500}
        done = stream_generate(client, body).json("done")[0]
    finally:
        live.settings.request_timeout_s = 300.0
    assert done["finish_reason"] == "cancelled" and done["generated_tokens"] < 500
    assert live.worker.status()["last_job"]["timed_out"]


def test_v1_request_time_limit_is_length_with_cancelled_in_the_extension(live, client):
    """OpenAI has no value for a cut request: "length" (llama.cpp's server at its time limit),
    the extension's summary says "cancelled" (README)."""
    wait_idle(live)
    live.settings.request_timeout_s = 0.3
    body = {"model": "m", "messages": [{"role": "user", "content": "Tell me a long story."}],
            "max_tokens": 500, "temperature": 0, "entropix": True}  # fmt: skip
    try:
        r = client.post("/v1/chat/completions", json=body)
    finally:
        live.settings.request_timeout_s = 300.0
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["entropix"]["summary"]["finish_reason"] == "cancelled"
    assert r.json()["usage"]["completion_tokens"] < 500
    assert live.worker.status()["last_job"]["timed_out"]


def test_wrong_host_header_is_refused_when_configured():
    """The loopback guard against DNS rebinding (mlx_server.py sets it for 127.0.0.1)."""
    from mlx_entropix.server import create_app

    from fastapi.testclient import TestClient

    app = create_app(ServerSettings(ui_dir=None, allowed_hosts=["127.0.0.1", "localhost"]))
    with TestClient(app, base_url="http://localhost") as tc:  # lifespan loads the model
        assert tc.get("/api/health").status_code == 200
        assert tc.get("/api/health", headers={"host": "evil.example"}).status_code == 400


def test_the_no_ui_page_gives_the_readmes_build_command():
    """It said ``npm ci``, which fails in ui/ (no package-lock.json: bun builds it)."""
    from pathlib import Path

    from mlx_entropix.server.app import NO_UI_PAGE

    command = "cd ui && bun install --frozen-lockfile && bun run build"
    assert command in " ".join(NO_UI_PAGE.split())
    assert command in (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_static_ui_served_at_root(tmp_path):
    """The built UI is mounted last: / serves index.html and /api still routes to the API."""
    import asyncio

    from mlx_entropix.server import create_app

    (tmp_path / "index.html").write_text("<!doctype html><title>entropix ui</title>")
    (tmp_path / "app.js").write_text("console.log(1)")
    app = create_app(ServerSettings(ui_dir=tmp_path))

    async def main():
        transport = httpx.ASGITransport(app=app)  # no lifespan: no model needed for static
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return (await c.get("/")), (await c.get("/app.js")), (await c.get("/api/nope"))

    root, js, missing = asyncio.run(main())
    assert root.status_code == 200 and "entropix ui" in root.text
    # The page names its hashed scripts: checked again on every load, never kept stale.
    assert root.headers["cache-control"] == "no-cache"
    assert js.status_code == 200
    assert "cache-control" not in js.headers
    assert missing.status_code == 404 and json.loads(missing.text)["detail"]


def test_wildcard_cors_is_refused():
    from mlx_entropix.server import create_app

    with pytest.raises(ValueError, match="wildcard"):
        create_app(ServerSettings(cors_origins=["*"]))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "/nonexistent/model.gguf"], "not found"),
        (["--config", "/nonexistent.json"], "not found"),
        (["--max-queue", "0"], "max-queue"),
        (["--allow-origin", "*"], "explicitly"),
        # an origin that no browser's Origin header matches was taken: CORS then refused all
        (["--allow-origin", "http://localhost:5173/"], "without a path or trailing slash"),
        (["--allow-origin", "localhost:5173"], "an origin is scheme://host[:port]"),
        # a bad prompt CSV was taken, then /api/prompts answered 503
        (["--prompts", "/nonexistent.csv"], "prompt CSV not found: /nonexistent.csv"),
        (["--prompts", "{cols}"], "has no 'prompt' column (columns found: 'foo', 'bar')"),
        (["--prompts", "{binary}"], "cannot read prompt CSV"),
        # a pipe was read once here, then /api/prompts blocked re-reading it
        (["--prompts", "{fifo}"], "a file, not a pipe"),
        # a --ui folder without a built UI was served as "the UI is not built"
        (["--ui", "{dir}"], "no index.html there"),
    ],
)
def test_cli_errors_are_one_line(argv, needle, capsys, tmp_path):
    import mlx_server

    (tmp_path / "cols.csv").write_text("foo,bar\n1,2\n")
    (tmp_path / "binary.csv").write_bytes(bytes(range(128, 256)))
    os.mkfifo(tmp_path / "fifo")
    files = {"cols": tmp_path / "cols.csv", "binary": tmp_path / "binary.csv", "dir": tmp_path,
             "fifo": tmp_path / "fifo"}  # fmt: skip
    assert mlx_server.main([a.format(**files) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--port", "-1"], "--port must lie in [0, 65535] (got -1)"),
        (["--port", "70000"], "--port must lie in [0, 65535] (got 70000)"),
        (["--prefix-cache-mb", "nan"], "--prefix-cache-mb must be at least 0"),
        (["--prefix-cache-mb", "inf"], "--prefix-cache-mb must be at least 0"),
        (["--timeout", "nan"], "--timeout must be positive"),
        (["--ping", "nan"], "--timeout must be positive and --ping non-negative"),
    ],
)
def test_out_of_range_flags_are_refused_before_the_load(argv, needle):
    """A port out of range was a traceback from uvicorn after the model's load, a NaN or
    infinite --prefix-cache-mb one from the load; a NaN --timeout or --ping was taken (no time
    limit at all). All are refused while the flags are read."""
    from mlx_entropix.server.main import parse_args, settings_from

    with pytest.raises(ValueError) as err:
        settings_from(parse_args(argv))
    assert needle in str(err.value)


def test_cli_bad_sampler_config(capsys, tmp_path):
    import mlx_server

    bad = tmp_path / "bad.json"
    bad.write_text('{"temperature": -3}')
    assert mlx_server.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "temperature" in err and "\n" not in err


def test_sse_equals_cli_json(client):
    """The acceptance check verbatim: the CLI's --json lines and the SSE events agree."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "mlx_main.py").exists():
        pytest.skip("mlx_main.py not present")
    cmd = [sys.executable, "mlx_main.py", "--input", PROMPT, "--seed", "21", "--max-tokens", "10"]
    out = subprocess.run(
        [*cmd, "--json"], cwd=root, capture_output=True, text=True, timeout=300, check=True
    )
    cli = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    cli_tokens = [e for e in cli if e["type"] == "token"]
    cli_done = next(e for e in cli if e["type"] == "done")
    sse = stream_generate(client, {"prompt": PROMPT, "seed": 21, "max_tokens": 10})
    tokens, done = sse.json("token"), sse.json("done")[0]
    assert [t["id"] for t in tokens] == [t["id"] for t in cli_tokens]
    assert "".join(t["text"] for t in tokens) == done["text"] == cli_done["text"]


def test_fork_mode_streams_fork_events(client, embedded):
    sampler = {"fork_trigger": "first", "fork_branches": 2, "fork_branch_tokens": 3}
    body = {"prompt": PROMPT, "mode": "fork", "max_tokens": 6, "sampler": sampler}
    sse = stream_generate(client, body)
    names = [name for name, _ in sse.events]
    assert names[0] == "fork" and names[-1] == "done" and set(names[1:-1]) == {"token"}
    fork, done = sse.json("fork")[0], sse.json("done")[0]
    assert len(fork["branches"]) == 2 and done["forks"] == 1
    assert done["tokens_computed"] >= done["generated_tokens"]
    assert "".join(t["text"] for t in sse.json("token")) == done["text"]
    body = {"prompt": PROMPT, "modes": ["greedy", "fork"], "max_tokens": 4, "sampler": sampler}
    events = stream_generate(client, body, "/api/compare").json()
    assert sorted(e["mode"] for e in events if e["type"] == "done") == ["fork", "greedy"]
    assert [e["mode"] for e in events if e["type"] == "fork"] == ["fork"]


def test_one_ctrl_c_is_one_sigint_even_when_uv_forwards_it():
    """`uv run mlx_server.py` + Ctrl-C: the terminal's SIGINT reaches uv and the server, and uv
    forwards it, so two come at once. uvicorn took the second as force quit (the open streams
    cut mid-body, tracebacks); now it is the same Ctrl-C. A later one still forces the quit."""
    import signal

    from mlx_entropix.server.main import one_ctrl_c

    import uvicorn
    from sse_starlette.sse import AppStatus

    server = uvicorn.Server(uvicorn.Config(app=lambda: None))
    one_ctrl_c(server, window_s=0.2)
    try:
        server.handle_exit(signal.SIGINT, None)
        server.handle_exit(signal.SIGINT, None)  # forwarded by uv
        assert server.should_exit and not server.force_exit
        time.sleep(0.3)
        server.handle_exit(signal.SIGINT, None)  # the user presses Ctrl-C again: quit now
        assert server.force_exit
    finally:
        # sse_starlette's patch of uvicorn's handle_exit set its process-wide "shutting
        # down" flag: every later SSE stream of this test process would end at once.
        AppStatus.should_exit = False


# A server whose model (the real one) is loaded, then its load "goes on": Ctrl-C lands there.
SLOW_LOAD = """
import sys, time
import mlx_entropix
from mlx_entropix.server import engine, main
real = engine.Engine.load
def slow(settings):
    real(settings)  # MLX state on the loading thread, as a long load has
    print("LOADING", file=sys.stderr, flush=True)
    time.sleep(120)
engine.Engine.load = slow
sys.exit(main.main(["--port", "0"]))
"""


def test_ctrl_c_during_the_model_load_is_one_line_and_130():
    """Found by use: a traceback, then "terminate called without an active exception" and
    SIGABRT (the interpreter exited while the loading thread held MLX state)."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_LOAD], cwd=Path(__file__).resolve().parents[1],
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline()]
        while "LOADING" not in lines[-1] and lines[-1]:
            lines.append(proc.stderr.readline())
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
    assert proc.returncode == 130, "".join(lines) + rest
    assert rest.strip() == "interrupted while loading the model"
