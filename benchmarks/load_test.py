"""Load test of the server: N concurrent SSE streams on loopback, latency and throughput.

    uv run benchmarks/load_test.py                       # starts mlx_server.py on a free port
    uv run benchmarks/load_test.py --streams 16 --max-tokens 32 --mode normal
    uv run benchmarks/load_test.py --url http://127.0.0.1:8000   # a server already running

Bounded on purpose: loopback only, at most 64 streams of at most 256 tokens. Reports streams
served (and refused with 503), aggregate tokens/s, and percentiles of time to first token and
of total latency, as seen by the client; writes JSON to benchmarks/results/load_test.json.
The server serves one generation at a time (requests queue), so the aggregate tokens/s is the
single-stream decode speed minus the overhead, and latency grows with the queue.
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "mlx_server.py"), "--port", str(port)]
    cmd += ["--log-level", "warning", "--max-queue", str(max(16, args.streams))]
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
    p.add_argument("--out", default=str(OUT), help="JSON output path")
    args = p.parse_args(argv)
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
        report = asyncio.run(run(url, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
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


if __name__ == "__main__":
    sys.exit(main())
