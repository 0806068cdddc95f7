"""Helpers of ``load_test.py``: the SSE client, stream comparison, percentiles, the server.

Not a script of its own. ``load_test.py`` loads it by name (``importlib``) from its own folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Name three colours.",
    "Write one sentence about the sea.",
    "What is 12 times 7?",
    "Give me a word that rhymes with cat.",
    "Which number is larger, 9.9 or 9.11?",
    "Describe a cloud in five words.",
    "List two fruits.",
    "Say hello in French.",
]
SENTENCE = "The quick brown fox jumps over the lazy dog. "
# Token fields that must match between a stream served in a batch and the same request alone
# (``elapsed_s`` is a time, not a result).
TOKEN_FIELDS = ("id", "text", "state", "action", "metrics", "params", "logprob", "top")
DONE_FIELDS = ("text", "finish_reason", "generated_tokens", "state_counts", "action_counts")


def now() -> dict:
    """Date/time and the machine's load average (1, 5, 15 min) at this moment."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"utc": datetime.now(UTC).isoformat(timespec="seconds"), "load_average": load}


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}"


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


def request_body(i: int, args: argparse.Namespace, max_tokens: int | None = None) -> dict:
    """Request i of a run: its own prompt and seed (``--seed`` + i), so runs are reproducible."""
    return {
        "prompt": PROMPTS[i % len(PROMPTS)],
        "mode": args.mode,
        "max_tokens": args.max_tokens if max_tokens is None else max_tokens,
        "seed": args.seed + i,
    }


async def sse(client: httpx.AsyncClient, body: dict, keep: bool = True) -> dict:
    """One /api/generate stream. Times are ``time.perf_counter()`` values: ``sent``, ``first``
    and ``last`` token, ``end``; ``events`` (with ``keep``) holds the token events' data."""
    out: dict = {"sent": time.perf_counter(), "first": None, "last": None, "tokens": 0}
    events: list[dict] = []
    event = None
    try:
        async with client.stream("POST", "/api/generate", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {**out, "status": r.status_code, "end": time.perf_counter()}
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "token":
                    out["last"] = time.perf_counter()
                    out["first"] = out["first"] or out["last"]
                    out["tokens"] += 1
                    if keep:
                        events.append(json.loads(line[5:]))
                elif line.startswith("data:") and event in ("done", "error"):
                    out.update(end=time.perf_counter(), status=200 if event == "done" else "error")
                    out["done" if event == "done" else "error"] = json.loads(line[5:])
                    return {**out, "events": events}
    except httpx.HTTPError as err:
        return {**out, "status": f"client error: {type(err).__name__}", "end": time.perf_counter()}
    return {**out, "status": "stream ended without done", "end": time.perf_counter()}


def timing(s: dict) -> dict:
    """A stream's client-side figures (seconds from sending)."""
    first, last = s.get("first"), s.get("last")
    decode = (s["tokens"] - 1) / (last - first) if first and last and last > first else None
    done = s.get("done") or {}
    return {
        "status": s.get("status"),
        "tokens": s["tokens"],
        "ttft_s": first - s["sent"] if first else None,
        "total_s": s["end"] - s["sent"],
        "decode_tok_s": decode,
        "finish_reason": done.get("finish_reason"),
        "server_ttft_s": done.get("ttft_s"),
        "server_decode_tok_s": done.get("decode_tok_s"),
    }


def decode_rate(streams: list[dict]) -> float | None:
    """Aggregate decode tokens/s: tokens after each stream's first / the time during which at
    least one stream was between its first and last token (the union of those intervals; for
    streams served one after another, the sum of their decode times)."""
    timed = [s for s in streams if s.get("first") is not None and s.get("last") is not None]
    spans = sorted((s["first"], s["last"]) for s in timed)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    tokens = sum(s["tokens"] - 1 for s in timed)
    return tokens / busy if busy > 0 else None


def compare(batched: dict, alone: dict) -> dict:
    """Whether a stream served in the batch equals the same request served alone: token ids
    and text, per-token metrics (exact floats), everything else of each token but its time,
    and the done event's text and counts."""
    a, b = batched.get("events", []), alone.get("events", [])
    ok = batched.get("status") == alone.get("status") == 200 and len(a) == len(b)
    pairs = list(zip(a, b, strict=False))  # same length when ok
    tokens = ok and all((x["id"], x["text"]) == (y["id"], y["text"]) for x, y in pairs)
    metrics = ok and all(x["metrics"] == y["metrics"] for x, y in pairs)
    rest = ok and all(x[f] == y[f] for x, y in pairs for f in TOKEN_FIELDS)
    da, db = batched.get("done") or {}, alone.get("done") or {}
    done = ok and all(da.get(f) == db.get(f) for f in DONE_FIELDS)
    first_diff = next(
        (i for i, (x, y) in enumerate(pairs) if any(x[f] != y[f] for f in TOKEN_FIELDS)), None
    )
    return {
        "tokens_and_text": tokens,
        "metrics_bitwise": metrics,
        "all_token_fields": rest,
        "done": done,
        "identical": bool(tokens and metrics and rest and done),
        "first_differing_token": first_diff,
        "tokens": [len(a), len(b)],
        "text": [da.get("text"), db.get("text")] if not done else None,
    }


async def health(client: httpx.AsyncClient) -> dict:
    return (await client.get("/api/health")).json()["queue"]


async def wait_idle(client: httpx.AsyncClient, limit: float = 60.0) -> None:
    """Until the server runs nothing (a run starts on an idle server)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        q = await health(client)
        if not q["running_jobs"] and not q["pending"]:
            return
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "mlx_server.py"), "--port", str(port)]
    cmd += ["--log-level", "warning", "--max-queue", str(max(16, args.streams))]
    cmd += ["--max-prompt-tokens", "8192"]  # the long-prefill scenario's prompt
    if args.model:
        cmd += ["--model", args.model]
    if args.max_batch is not None:
        cmd += ["--max-batch", str(args.max_batch)]
    if not args.batch_invariant:
        cmd += ["--no-batch-invariant"]
    return launch(cmd, port, 300)


def launch(cmd: list[str], port: int, timeout_s: float) -> tuple[subprocess.Popen, str]:
    """Start the server ``cmd`` (listening on ``port``) and wait until its health check answers."""
    proc = subprocess.Popen(cmd, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"error: the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"error: the server did not start within {timeout_s:.0f} s")


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} tok/s"


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def load(value: list | tuple | None) -> str:
    return "?" if value is None else " ".join(f"{v:.2f}" for v in value)
