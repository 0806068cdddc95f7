"""Load test of the server: N concurrent SSE streams on loopback, latency and throughput.

    uv run benchmarks/load_test.py                       # starts mlx_server.py on a free port
    uv run benchmarks/load_test.py --streams 16 --max-tokens 32 --mode normal
    uv run benchmarks/load_test.py --url http://127.0.0.1:8000   # a server already running
    uv run benchmarks/load_test.py --scenario long-prefill       # a long prompt vs a short one

Bounded on purpose: loopback only, at most 64 streams of at most 256 tokens. Reports streams
served (and refused with 503), aggregate tokens/s, and percentiles of time to first token and
of total latency, as seen by the client; writes JSON to benchmarks/results/load_test.json.
The server serves one generation at a time (requests queue), so the aggregate tokens/s is the
single-stream decode speed minus the overhead, and latency grows with the queue.

``--scenario long-prefill``: while an 8,000-token prompt prefills, another client sends a
16-token request; after ``--wait`` s (the goal: its first token by then) the long prompt's
client disconnects. Reports whether the short request got its first token within the wait,
how soon after the disconnect the worker was free (``/api/health``'s last job), and the short
request's first token and end. One worker, no cross-request batching: the short request waits
for the long prefill unless that is cancelled. Writes ``load_test_long_prefill.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "load_test.json"
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


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:  # nearest rank
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]

    return {"p50": pick(0.50), "p90": pick(0.90), "p99": pick(0.99), "max": ordered[-1]}


async def one_stream(client: httpx.AsyncClient, i: int, args: argparse.Namespace) -> dict:
    body = {
        "prompt": PROMPTS[i % len(PROMPTS)],
        "mode": args.mode,
        "max_tokens": args.max_tokens,
        "seed": 1000 + i,
    }
    start = time.perf_counter()
    first = None
    tokens = 0
    event = None
    try:
        async with client.stream("POST", "/api/generate", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {"status": r.status_code, "total_s": time.perf_counter() - start}
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event == "token":
                    tokens += 1
                    if first is None:
                        first = time.perf_counter() - start
                elif line.startswith("data:") and event in ("done", "error"):
                    done = json.loads(line[5:])
                    ok = event == "done"
                    return {
                        "status": 200 if ok else "error",
                        "tokens": tokens,
                        "ttft_s": first,
                        "total_s": time.perf_counter() - start,
                        "finish_reason": done.get("finish_reason"),
                        "server_decode_tok_s": done.get("decode_tok_s"),
                    }
    except httpx.HTTPError as err:
        return {"status": f"client error: {type(err).__name__}"}
    return {"status": "stream ended without done"}


async def run(url: str, args: argparse.Namespace) -> dict:
    limits = httpx.Limits(max_connections=args.streams + 2)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        info = (await client.get("/api/info")).json()
        # Warm-up (not timed): one short request.
        await one_stream(client, 0, argparse.Namespace(**{**vars(args), "max_tokens": 2}))
        start = time.perf_counter()
        results = await asyncio.gather(*(one_stream(client, i, args) for i in range(args.streams)))
        wall = time.perf_counter() - start
    served = [r for r in results if r.get("status") == 200]
    tokens = sum(r["tokens"] for r in served)
    return {
        "config": {
            "streams": args.streams,
            "max_tokens": args.max_tokens,
            "mode": args.mode,
            "url": url,
        },
        "model": info["model"].get("name"),
        "runtime": info["runtime"],
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "streams_served": len(served),
        "streams_refused_503": sum(1 for r in results if r.get("status") == 503),
        "streams_failed": sum(1 for r in results if r.get("status") not in (200, 503)),
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_s": percentiles([r["ttft_s"] for r in served if r["ttft_s"] is not None]),
        "total_s": percentiles([r["total_s"] for r in served]),
        "server_decode_tok_s_mean": statistics.fmean(
            [r["server_decode_tok_s"] for r in served if r.get("server_decode_tok_s")] or [0.0]
        ),
        "per_stream": results,
    }


SENTENCE = "The quick brown fox jumps over the lazy dog. "


async def prompt_tokens(client: httpx.AsyncClient, prompt: str) -> int:
    """The server's count of a prompt's tokens (one greedy token generated)."""
    body = {"prompt": prompt, "mode": "greedy", "max_tokens": 1, "top_logprobs": 0}
    async with client.stream("POST", "/api/generate", json=body) as r:
        event = None
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "done":
                return int(json.loads(line[5:])["prompt_tokens"])
    raise RuntimeError(f"no done event for a {len(prompt)}-character prompt")


async def last_job_after(client: httpx.AsyncClient, previous: int | None, limit: float) -> dict:
    """Poll /api/health until a job other than ``previous`` has ended; its summary."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        job = (await client.get("/api/health")).json()["queue"]["last_job"] or {}
        if job.get("id") != previous:
            return job
        await asyncio.sleep(0.05)
    return {}


async def long_prefill(url: str, args: argparse.Namespace) -> dict:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        info = (await client.get("/api/info")).json()
        one, eleven = await asyncio.gather(
            prompt_tokens(client, SENTENCE), prompt_tokens(client, SENTENCE * 11)
        )
        per = (eleven - one) / 10
        repeats = max(1, round((args.long_tokens - (one - per)) / per))
        long_prompt = SENTENCE * repeats
        previous = ((await client.get("/api/health")).json()["queue"]["last_job"] or {}).get("id")

        long_body = {"prompt": long_prompt, "mode": "greedy", "max_tokens": 4}
        long_status: dict = {}

        async def hold() -> None:  # the long prompt's client; cancelled = it disconnects
            async with client.stream("POST", "/api/generate", json=long_body) as r:
                long_status["status"] = r.status_code
                async for _ in r.aiter_lines():
                    pass

        long_task = asyncio.create_task(hold())
        deadline = time.perf_counter() + 30
        while not (await client.get("/api/health")).json()["queue"]["running"]:
            if long_task.done() or time.perf_counter() > deadline:
                await long_task
                return {"error": f"the long prompt was not served: {long_status}"}
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.head)  # the long prefill is well under way
        t_short = time.perf_counter()
        short_args = argparse.Namespace(**{**vars(args), "max_tokens": 16})
        short_task = asyncio.create_task(one_stream(client, 0, short_args))
        await asyncio.sleep(args.wait)
        short_done_early = short_task.done()

        t_cancel = time.perf_counter()
        long_task.cancel()
        job = await last_job_after(client, previous, 60)
        freed_s = time.perf_counter() - t_cancel if job else None
        short = await short_task
    ttft = short.get("ttft_s")
    return {
        "scenario": "long-prefill",
        "model": info["model"].get("name"),
        "runtime": info["runtime"],
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "long_prompt_tokens": round(one - per + per * repeats),
        "long_prefill_head_s": args.head,
        "wait_s": args.wait,
        "short_first_token_within_wait": ttft is not None and ttft <= args.wait,
        "short_done_within_wait": short_done_early,
        "worker_freed_after_cancel_s": freed_s,
        "cancelled_job": job,
        "short_ttft_s": ttft,
        "short_ttft_after_cancel_s": (t_short + ttft - t_cancel) if ttft is not None else None,
        "short": short,
    }


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
    proc = subprocess.Popen(cmd, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
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
    raise SystemExit("error: the server did not start within 300 s")


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=8, help="concurrent streams (1..64)")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per stream (1..256)")
    p.add_argument("--mode", default="entropix", choices=["entropix", "normal", "greedy"])
    p.add_argument("--url", default=None, help="a running server (loopback only)")
    p.add_argument("--model", default=None, help="model for the server started here")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request client timeout")
    p.add_argument("--out", default=None, help="JSON output path")
    p.add_argument("--scenario", default="streams", choices=["streams", "long-prefill"])
    p.add_argument("--long-tokens", type=int, default=8000, help="long-prefill: prompt tokens")
    p.add_argument("--head", type=float, default=3.0, help="long-prefill: s before the short")
    p.add_argument("--wait", type=float, default=5.0, help="long-prefill: s before the cancel")
    args = p.parse_args(argv)
    if args.out is None:
        name = "load_test.json" if args.scenario == "streams" else "load_test_long_prefill.json"
        args.out = str(OUT.parent / name)
    if not 16 <= args.long_tokens <= 8100:
        print("error: --long-tokens must lie in [16, 8100]", file=sys.stderr)
        return 2
    if not 1 <= args.streams <= 64 or not 1 <= args.max_tokens <= 256:
        print("error: --streams must lie in [1, 64] and --max-tokens in [1, 256]", file=sys.stderr)
        return 2
    if args.url and not is_loopback_url(args.url):
        print("error: --url must be a loopback address (127.0.0.1, localhost)", file=sys.stderr)
        return 2

    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args)
    try:
        scenario = run if args.scenario == "streams" else long_prefill
        report = asyncio.run(scenario(url, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.scenario == "long-prefill":
        return print_long_prefill(report, out)
    ttft, total = report["ttft_s"], report["total_s"]
    print(f"{report['model']} on {report['runtime']['device']}")
    print(
        f"streams served {report['streams_served']}/{args.streams} "
        f"(503: {report['streams_refused_503']}, failed: {report['streams_failed']}), "
        f"{report['tokens']} tokens in {report['wall_s']:.1f} s: "
        f"{report['aggregate_tok_s']:.1f} tok/s aggregate"
    )
    for name, pct in (("TTFT", ttft), ("total", total)):
        if pct["p50"] is not None:
            print(
                f"{name:>5} latency  p50 {pct['p50']:.2f} s  p90 {pct['p90']:.2f} s  "
                f"p99 {pct['p99']:.2f} s  max {pct['max']:.2f} s"
            )
    print(f"wrote {out}")
    return 0 if report["streams_failed"] == 0 else 1


def print_long_prefill(report: dict, out: Path) -> int:
    if "error" in report:
        print(f"error: {report['error']}", file=sys.stderr)
        return 1
    short = report["short"]

    def s(value: float | None) -> str:
        return "none" if value is None else f"{value:.2f} s"

    print(f"{report['model']} on {report['runtime']['device']}, load {report['load_average']}")
    print(
        f"long prompt {report['long_prompt_tokens']} tokens; short request sent "
        f"{report['long_prefill_head_s']:.0f} s into its prefill"
    )
    print(
        f"first token of the short request within {report['wait_s']:.0f} s: "
        f"{'yes' if report['short_first_token_within_wait'] else 'no'} (one worker, FIFO)"
    )
    freed = s(report["worker_freed_after_cancel_s"])
    print(f"worker free after the long prompt's client left: {freed}")
    print(
        f"short request: first token {s(report['short_ttft_s'])} after sending "
        f"({s(report['short_ttft_after_cancel_s'])} after the cancel), "
        f"{short.get('tokens')} tokens, done in {s(short.get('total_s'))}"
    )
    print(f"wrote {out}")
    return 0 if short.get("status") == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
