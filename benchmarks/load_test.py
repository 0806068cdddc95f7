"""Load test of the server on loopback: concurrent SSE streams, and a short request during a long
prompt's prefill (the two goals of the serving issue).

    uv run benchmarks/load_test.py                       # starts mlx_server.py on a free port
    uv run benchmarks/load_test.py --streams 8 --max-tokens 32 --max-batch 1   # one at a time
    uv run benchmarks/load_test.py --url http://127.0.0.1:8000   # a server already running
    uv run benchmarks/load_test.py --scenario long-prefill       # a long prompt vs a short one

Bounded on purpose: loopback only, at most 64 streams of at most 256 tokens.

``--scenario streams`` (default). The server decodes concurrent requests as one batch
(continuous batching, ``--max-batch`` rows). After an untimed warm-up: request 0 alone (the
single-stream baseline), then N requests at once (request i: prompt i, ``--seed`` + i), then
each of the N again alone, one after another. Reports aggregate tokens/s of the concurrent run
(all tokens / wall time from the first request sent to the last stream done) against the
single stream's (its tokens / its wall time) and against the N served one after another, the
decode-only figures (tokens after each stream's first / the time during which some stream
was between its first and last token), percentiles of time to first token and total latency,
and how many streams were identical to the same request served alone (token ids and text,
every metric bitwise, the rest of each token event, the done event's text and counts).
Goal: ratio >= 3, TTFT p90 <= 3 s, N/N identical. Writes ``benchmarks/results/load_test.json``.

``--scenario long-prefill``: while an ``--long-tokens`` (8,000) prompt prefills, another
client sends a 16-token request ``--head`` s into it. Goal: its first token within ``--wait``
s (5), and it finishes while the long prompt still prefills. Once it is done (at least
``--wait`` s after sending it, at most ``--short-limit`` s) the long prompt's client
disconnects; reports how soon the worker was free (``/api/health``'s cancelled count; goal:
within 1 s) and whether the short stream equals the same request served alone. Writes
``load_test_long_prefill.json`` (``--long-mode fork``: the long request in fork mode, prefilled
by the shared decoder like any other, its branches rows of the batch). Both scenarios record
the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
lc = importlib.import_module("load_client")  # the sibling helper module (benchmarks/ is no package)

OUT = lc.ROOT / "benchmarks" / "results" / "load_test.json"


def settings(args: argparse.Namespace, url: str, queue: dict, info: dict) -> dict:
    return {
        "scenario": args.scenario,
        "streams": args.streams,
        "max_tokens": args.max_tokens,
        "mode": args.mode,
        "seed": args.seed,
        "url": url,
        "server_started_here": args.url is None,
        "max_batch_flag": args.max_batch,
        "max_running": queue.get("max_running"),
        "batch_invariant": info["runtime"].get("batch_invariant"),
    }


async def streams(url: str, args: argparse.Namespace) -> dict:
    n = args.streams
    limits = httpx.Limits(max_connections=n + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        info = (await client.get("/api/info")).json()
        queue = await lc.health(client)
        before = lc.now()
        # Warm-up (not timed): a short request alone, then N short ones at once.
        await lc.sse(client, lc.request_body(0, args, 2), keep=False)
        await asyncio.gather(*(lc.sse(client, lc.request_body(i, args, 2)) for i in range(n)))
        await lc.wait_idle(client)
        single = await lc.sse(client, lc.request_body(0, args))
        await lc.wait_idle(client)
        t0 = time.perf_counter()
        batch = await asyncio.gather(*(lc.sse(client, lc.request_body(i, args)) for i in range(n)))
        wall = max(s["end"] for s in batch) - t0
        alone = []
        for i in range(n):
            await lc.wait_idle(client)
            alone.append(await lc.sse(client, lc.request_body(i, args)))
        after = lc.now()

    one = lc.timing(single)
    one["tok_s"] = one["tokens"] / one["total_s"]
    runs = [lc.timing(s) for s in batch]
    served = [r for r in runs if r["status"] == 200]
    tokens = sum(r["tokens"] for r in served)
    aggregate = tokens / wall if wall > 0 else 0.0
    decode = lc.decode_rate([s for s in batch if s.get("status") == 200])
    serial = [lc.timing(s) for s in alone]
    serial_tok_s = sum(r["tokens"] for r in serial) / sum(r["total_s"] for r in serial)
    same = [lc.compare(b, a) for b, a in zip(batch, alone, strict=True)]
    ttft = lc.percentiles([r["ttft_s"] for r in served if r["ttft_s"] is not None])
    identical = sum(c["identical"] for c in same)
    ratio = aggregate / one["tok_s"] if one["tok_s"] else None
    decode_ratio = decode / one["decode_tok_s"] if decode and one["decode_tok_s"] else None
    return {
        "settings": settings(args, url, queue, info),
        "model": info["model"].get("name"),
        "runtime": info["runtime"],
        "machine": lc.machine(),
        "before": before,
        "after": after,
        "single": one,
        "single_repeat_identical": lc.compare(single, alone[0])["identical"],
        "streams_served": len(served),
        "streams_refused_503": sum(1 for r in runs if r["status"] == 503),
        "streams_failed": sum(1 for r in runs if r["status"] not in (200, 503)),
        "tokens": tokens,
        "wall_s": wall,
        "aggregate_tok_s": aggregate,
        "ratio_to_single": ratio,
        "decode_tok_s": decode,
        "decode_tok_s_sum_per_stream": sum(r["decode_tok_s"] or 0.0 for r in served),
        "decode_ratio_to_single": decode_ratio,
        "serial_tok_s": serial_tok_s,
        "serial_wall_s": sum(r["total_s"] for r in serial),
        "ratio_to_serial": aggregate / serial_tok_s if serial_tok_s else None,
        "ttft_s": ttft,
        "total_s": lc.percentiles([r["total_s"] for r in served]),
        "server_decode_tok_s_mean": statistics.fmean(
            [r["server_decode_tok_s"] for r in served if r["server_decode_tok_s"]] or [0.0]
        ),
        "identical": identical,
        "identical_tokens_and_text": sum(c["tokens_and_text"] for c in same),
        "identical_metrics_bitwise": sum(c["metrics_bitwise"] for c in same),
        "goal": {
            "ratio_ge_3": ratio is not None and ratio >= 3,
            "decode_ratio_ge_3": decode_ratio is not None and decode_ratio >= 3,
            "ttft_p90_le_3s": ttft["p90"] is not None and ttft["p90"] <= 3.0,
            "all_identical": identical == n,
        },
        "per_stream": [
            {**r, "alone": a, "comparison": c, "text": (s.get("done") or {}).get("text")}
            for r, a, c, s in zip(runs, serial, same, batch, strict=True)
        ],
    }


async def prompt_tokens(client: httpx.AsyncClient, prompt: str) -> int:
    """The server's count of a prompt's tokens (one greedy token generated)."""
    body = {"prompt": prompt, "mode": "greedy", "max_tokens": 1, "top_logprobs": 0}
    s = await lc.sse(client, body, keep=False)
    if "done" not in s:
        raise RuntimeError(f"no done event for a {len(prompt)}-character prompt")
    return int(s["done"]["prompt_tokens"])


async def freed_after(client: httpx.AsyncClient, cancelled: int, limit: float) -> bool:
    """Poll /api/health until the server has counted one more cancelled job."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        if (await lc.health(client))["cancelled"] > cancelled:
            return True
        await asyncio.sleep(0.02)
    return False


async def long_prefill(url: str, args: argparse.Namespace) -> dict:
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        info = (await client.get("/api/info")).json()
        before = lc.now()
        one, eleven = await asyncio.gather(
            prompt_tokens(client, lc.SENTENCE), prompt_tokens(client, lc.SENTENCE * 11)
        )
        per = (eleven - one) / 10
        repeats = max(1, round((args.long_tokens - (one - per)) / per))
        long_body = {"prompt": lc.SENTENCE * repeats, "mode": args.long_mode, "max_tokens": 4}
        short_body = lc.request_body(0, args, 16)
        await lc.wait_idle(client)
        queue = await lc.health(client)
        long: dict = {}

        async def hold() -> None:  # the long prompt's client; cancelled = it disconnects
            long["sent"] = time.perf_counter()
            async with client.stream("POST", "/api/generate", json=long_body) as r:
                long["status"] = r.status_code
                async for line in r.aiter_lines():
                    if line.startswith("event:") and line[6:].strip() in ("token", "done"):
                        long.setdefault(line[6:].strip(), time.perf_counter())

        long_task = asyncio.create_task(hold())
        deadline = time.perf_counter() + 30
        while not (await lc.health(client))["running"]:
            if long_task.done() or time.perf_counter() > deadline:
                await long_task
                return {"error": f"the long prompt was not served: {long}"}
            await asyncio.sleep(0.05)
        await asyncio.sleep(args.head)  # the long prefill is well under way
        short_task = asyncio.create_task(lc.sse(client, short_body))
        t_short = time.perf_counter()
        await asyncio.wait({short_task}, timeout=args.short_limit)
        await asyncio.sleep(max(0.0, t_short + args.wait - time.perf_counter()))
        short_done_before_cancel = short_task.done()
        cancelled = (await lc.health(client))["cancelled"]
        long_state_at_cancel = dict(long)
        t_cancel = time.perf_counter()
        long_task.cancel()
        freed = await freed_after(client, cancelled, 60)
        freed_s = time.perf_counter() - t_cancel if freed else None
        short = await short_task
        await lc.wait_idle(client)
        alone = await lc.sse(client, short_body)
        after = lc.now()
    t = lc.timing(short)
    long_first = long_state_at_cancel.get("token")
    return {
        "scenario": "long-prefill",
        "long_mode": args.long_mode,
        "settings": {**settings(args, url, queue, info), "max_tokens": 16},
        "model": info["model"].get("name"),
        "runtime": info["runtime"],
        "machine": lc.machine(),
        "before": before,
        "after": after,
        "long_prompt_tokens": round(one - per + per * repeats),
        "long_prefill_head_s": args.head,
        "wait_s": args.wait,
        "short_first_token_within_wait": t["ttft_s"] is not None and t["ttft_s"] <= args.wait,
        "short_ttft_s": t["ttft_s"],
        "short_total_s": t["total_s"],
        "short_done_before_cancel": short_done_before_cancel,
        "long_first_token_s": long_first - long["sent"] if long_first else None,
        "long_first_token_before_short_done": bool(long_first and long_first < short["end"]),
        "long_elapsed_at_cancel_s": t_cancel - long["sent"],
        "worker_freed_after_cancel_s": freed_s,
        "short_ttft_after_cancel_s": (
            short["first"] - t_cancel if short["first"] and short["first"] > t_cancel else None
        ),
        "short_identical_to_alone": lc.compare(short, alone),
        "goal": {
            "short_first_token_within_5s": t["ttft_s"] is not None and t["ttft_s"] <= 5.0,
            "short_done_during_prefill": short_done_before_cancel and not long_first,
            "freed_within_1s": freed_s is not None and freed_s <= 1.0,
        },
        "short": t,
        "short_alone": lc.timing(alone),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--streams", type=int, default=8, help="concurrent streams (1..64)")
    p.add_argument("--max-tokens", type=int, default=32, help="tokens per stream (1..256)")
    p.add_argument("--mode", default="entropix", choices=["entropix", "normal", "greedy"])
    p.add_argument("--seed", type=int, default=100, help="request i uses seed + i")
    p.add_argument("--url", default=None, help="a running server (loopback only)")
    p.add_argument("--model", default=None, help="model for the server started here")
    p.add_argument("--max-batch", type=int, default=None, help="server started here: --max-batch")
    p.add_argument(
        "--no-batch-invariant",
        dest="batch_invariant",
        action="store_false",
        help="server started here: --no-batch-invariant",
    )
    p.add_argument(
        "--long-mode",
        default="greedy",
        choices=["greedy", "entropix", "fork"],
        help="long-prefill: the long prompt's mode (fork: its branches are rows of the batch)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per-request client timeout")
    p.add_argument("--out", default=None, help="JSON output path")
    p.add_argument("--scenario", default="streams", choices=["streams", "long-prefill"])
    p.add_argument("--long-tokens", type=int, default=8000, help="long-prefill: prompt tokens")
    p.add_argument("--head", type=float, default=3.0, help="long-prefill: s before the short")
    p.add_argument(
        "--wait", type=float, default=5.0, help="long-prefill: the short's first-token goal (s)"
    )
    p.add_argument(
        "--short-limit", type=float, default=120.0, help="long-prefill: s to wait for the short"
    )
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
    if args.max_batch is not None and not 1 <= args.max_batch <= 64:
        print("error: --max-batch must lie in [1, 64]", file=sys.stderr)
        return 2
    if args.url and not lc.is_loopback_url(args.url):
        print("error: --url must be a loopback address (127.0.0.1, localhost)", file=sys.stderr)
        return 2
    if args.url and (args.max_batch is not None or not args.batch_invariant):
        print("note: --max-batch/--no-batch-invariant apply only to a server started here")

    proc = None
    url = args.url
    if url is None:
        proc, url = lc.start_server(args)
    try:
        scenario = streams if args.scenario == "streams" else long_prefill
        report = asyncio.run(scenario(url, args))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    code = print_long_prefill(report) if args.scenario == "long-prefill" else print_streams(report)
    print(f"wrote {out}")
    return code


def header(r: dict) -> None:
    s = r["settings"]
    print(f"{r['model']} on {r['runtime']['device']}, {r['before']['utc']}")
    print(
        f"server: max_running {s['max_running']} rows, batch-invariant {s['batch_invariant']}; "
        f"load average before {lc.load(r['before']['load_average'])}, "
        f"after {lc.load(r['after']['load_average'])}"
    )


def print_streams(r: dict) -> int:
    s, one, n = r["settings"], r["single"], r["settings"]["streams"]
    header(r)
    print(f"{n} streams of {s['max_tokens']} tokens, mode {s['mode']}, seeds {s['seed']}+i")
    rows = [
        ("", "single (req. 0)", f"{n} concurrent", "ratio"),
        ("tokens", str(one["tokens"]), str(r["tokens"]), ""),
        ("wall time", lc.seconds(one["total_s"]), lc.seconds(r["wall_s"]), ""),
        ("tokens/s", lc.rate(one["tok_s"]), lc.rate(r["aggregate_tok_s"]),
         f"{r['ratio_to_single']:.2f}x"),
        ("decode tokens/s", lc.rate(one["decode_tok_s"]), lc.rate(r["decode_tok_s"]),
         f"{r['decode_ratio_to_single']:.2f}x" if r["decode_ratio_to_single"] else "-"),
        (f"{n} one after another", "", lc.rate(r["serial_tok_s"]), f"{r['ratio_to_serial']:.2f}x"),
        ("TTFT p50/p90/max", lc.seconds(one["ttft_s"]),
         " / ".join(f"{r['ttft_s'][k]:.2f}" for k in ("p50", "p90", "max")) + " s", ""),
        ("total p50/p90/max", lc.seconds(one["total_s"]),
         " / ".join(f"{r['total_s'][k]:.2f}" for k in ("p50", "p90", "max")) + " s", ""),
    ]  # fmt: skip
    for row in rows:
        print(f"{row[0]:<22}{row[1]:>16}{row[2]:>26}{row[3]:>9}")
    print(
        f"streams served {r['streams_served']}/{n} (503: {r['streams_refused_503']}, failed: "
        f"{r['streams_failed']}); identical to the same request alone: {r['identical']}/{n} "
        f"(tokens and text {r['identical_tokens_and_text']}/{n}, metrics bitwise "
        f"{r['identical_metrics_bitwise']}/{n}); request 0 twice alone identical: "
        f"{r['single_repeat_identical']}"
    )
    g = r["goal"]
    print(
        f"goal (a): ratio >= 3 {lc.met(g['ratio_ge_3'])} (decode-only "
        f"{lc.met(g['decode_ratio_ge_3'])}), TTFT p90 <= 3 s {lc.met(g['ttft_p90_le_3s'])}, "
        f"identical {lc.met(g['all_identical'])}"
    )
    return 0 if r["streams_failed"] == 0 else 1


def print_long_prefill(r: dict) -> int:
    if "error" in r:
        print(f"error: {r['error']}", file=sys.stderr)
        return 1
    header(r)
    same, g = r["short_identical_to_alone"], r["goal"]
    first = r["long_first_token_s"]
    print(
        f"long prompt {r['long_prompt_tokens']} tokens; a 16-token request sent "
        f"{r['long_prefill_head_s']:.0f} s into its prefill"
    )
    print(
        f"short request: first token {lc.seconds(r['short_ttft_s'])} after sending (within "
        f"{r['wait_s']:.0f} s: {'yes' if r['short_first_token_within_wait'] else 'no'}), "
        f"{r['short']['tokens']} tokens, done {lc.seconds(r['short_total_s'])} after sending, "
        f"before the cancel: {'yes' if r['short_done_before_cancel'] else 'no'}"
    )
    print(
        f"long prompt's first token by then: "
        f"{'none (still prefilling)' if first is None else lc.seconds(first)}; "
        f"cancelled {r['long_elapsed_at_cancel_s']:.1f} s after it was sent"
    )
    freed = lc.seconds(r["worker_freed_after_cancel_s"])
    print(f"worker free after the long prompt's client left: {freed}")
    print(f"short request identical to it served alone: {same['identical']}")
    print(
        f"goal (b): first token within 5 s {lc.met(g['short_first_token_within_5s'])}, done "
        f"during the prefill {lc.met(g['short_done_during_prefill'])}, freed within 1 s "
        f"{lc.met(g['freed_within_1s'])}"
    )
    return 0 if r["short"]["status"] == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
