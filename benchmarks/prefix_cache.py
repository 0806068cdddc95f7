"""The server's prefix cache on a conversation: a follow-up turn's time to first token.

Starts ``mlx_server.py`` (prefix cache on, ``--prefix-cache-mb``), then per round:
1. serves a conversation of about ``--history`` tokens (system, earlier turns, a question), as a
   chat client would (``/api/generate``, greedy, ``--answer`` tokens), and waits until the
   server is idle (it fills the answer's blocks into the cache then);
2. ``--questions`` next turns (the history, the answer, a new question each) through
   ``/api/generate``, and as many through the official OpenAI client (streamed): TTFT, as
   the client sees it, and ``cached_tokens``; each followed by
3. its new tokens alone (the next turn's tokens after what the server had served, as raw ids
   via ``/v1/completions``): the goal is a follow-up TTFT at most 1.3x this (the ratio per
   pair, measured back to back);
4. a next turn with the first token changed (no block matches: the cache-off cost).
Medians over the pairs and ``--rounds`` (each round its own conversation). Writes
``benchmarks/results/prefix_cache.json``.

    uv run benchmarks/prefix_cache.py               # ~10 min on a loaded 2-core CPU
    uv run benchmarks/prefix_cache.py --rounds 1 --history 800
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

# the sibling module's server launcher (benchmarks/ is no package)
_client = importlib.import_module("load_client")
free_port, launch = _client.free_port, _client.launch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "prefix_cache.json"
TOPICS = ["rivers", "glaciers", "deserts", "forests", "coral reefs", "volcanoes"]


def start_server(mb: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, str(ROOT / "mlx_server.py"), "--port", str(port), "--ui", "",
           "--log-level", "warning", "--prefix-cache-mb", str(mb)]  # fmt: skip
    return launch(cmd, port, 600)


def history(topic: str, tokens: int) -> list[dict]:
    """A conversation of about ``tokens`` tokens (4 characters a token, roughly)."""
    para = (f"Here are my notes on {topic}, point {{}}: they shape the land around them, "
            f"change with the seasons; people have studied {topic} for centuries. ")  # fmt: skip
    msgs = [{"role": "system", "content": "You are a concise assistant who answers in prose."}]
    turn = 0
    while sum(len(m["content"]) for m in msgs) < tokens * 4.6:
        turn += 1
        msgs.append({"role": "user", "content": "".join(para.format(turn * 10 + i)
                                                        for i in range(4))})  # fmt: skip
        msgs.append({"role": "assistant", "content": f"Noted: part {turn} about {topic}."})
    msgs.append({"role": "user", "content": f"Summarise what my notes say about {topic}."})
    return msgs


def api_turn(url: str, body: dict) -> dict:
    """``/api/generate`` streamed: TTFT as the client sees it, the tokens and the summary."""
    t0 = time.perf_counter()
    ttft, ids, done = None, [], {}
    with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=900) as resp:
        name = None
        for line in resp.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name in ("token", "done"):
                data = json.loads(line[5:])
                if name == "token":
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    ids.append(data["id"])
                else:
                    done = data
    return {"ttft_s": ttft, "ids": ids, "done": done}


def openai_turn(client, messages: list[dict], max_tokens: int) -> dict:
    t0, ttft, usage = time.perf_counter(), None, None
    stream = client.chat.completions.create(
        model="default", messages=messages, max_tokens=max_tokens, seed=0, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and ttft is None:
            ttft = time.perf_counter() - t0
        if chunk.usage:
            usage = chunk.usage
    details = usage.prompt_tokens_details if usage else None
    return {"ttft_s": ttft, "prompt_tokens": usage.prompt_tokens if usage else None,
            "cached_tokens": details.cached_tokens if details else None}  # fmt: skip


def alone(url: str, ids: list[int]) -> float:
    """TTFT of the raw ids as a prompt of their own (``/v1/completions``, streamed)."""
    t0 = time.perf_counter()
    body = {"model": "default", "prompt": ids, "max_tokens": 1, "stream": True, "temperature": 0}
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=900) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:") and '"text"' in line:
                return time.perf_counter() - t0
    raise RuntimeError("no token")


def wait_idle(url: str, timeout: float = 900) -> None:
    """Until no request runs and the server's idle work (the answer's blocks) is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = httpx.get(f"{url}/api/health").json()["queue"]
        filling = httpx.get(f"{url}/api/info").json()["prefix_cache"]["filling"]
        if not health["running"] and not health["pending"] and not filling:
            return
        time.sleep(0.5)


QUESTIONS = {
    "api": ["And in one sentence?", "Why does that matter?", "Give me one example."],
    "openai": ["Which point matters most?", "What did I leave out?", "Say it more simply."],
}


def one_round(url: str, client, tok, topic: str, args) -> dict:
    msgs = history(topic, args.history)
    served = api_turn(url, {"messages": msgs, "mode": "greedy", "max_tokens": args.answer})
    wait_idle(url)
    answer = {"role": "assistant", "content": served["done"]["text"]}
    seen = tok.apply_chat_template(msgs) + served["ids"]
    out: dict = {"history_tokens": served["done"]["prompt_tokens"], "history_ttft_s":
                 served["ttft_s"], "answer_tokens": len(served["ids"])}  # fmt: skip
    for via in ("api", "openai"):
        # Several next turns (each a new question after the same answer), each followed by its
        # new tokens alone: single TTFTs of ~0.3 s swing by +-30% on this machine, so the
        # ratio is taken per pair (measured back to back) and its median reported.
        pairs = []
        for question in QUESTIONS[via][: args.questions]:
            turn = [*msgs, answer, {"role": "user", "content": question}]
            ids = tok.apply_chat_template(turn)
            common = next((i for i, (a, b) in enumerate(zip(ids, seen, strict=False)) if a != b),
                          min(len(ids), len(seen)))  # fmt: skip
            new = ids[common:]
            wait_idle(url)
            if via == "api":
                hit = api_turn(url, {"messages": turn, "mode": "greedy", "max_tokens": 2})
                got = {"ttft_s": hit["ttft_s"], "cached_tokens": hit["done"]["cached_tokens"],
                       "prompt_tokens": hit["done"]["prompt_tokens"]}  # fmt: skip
            else:
                got = openai_turn(client, turn, 2)
            wait_idle(url)
            got["new_tokens"] = len(new)
            got["new_alone_ttft_s"] = alone(url, new)
            got["ratio_to_new_alone"] = got["ttft_s"] / got["new_alone_ttft_s"]
            pairs.append(got)
        # the same next turn with the first token changed: no block matches (the cache-off cost)
        turn = [*msgs, answer, {"role": "user", "content": QUESTIONS[via][0]}]
        wait_idle(url)
        if via == "api":
            off = {**turn[0], "content": "Hello. " + turn[0]["content"]}
            uncached = api_turn(url, {"messages": [off, *turn[1:]], "mode": "greedy",
                                      "max_tokens": 2})["ttft_s"]  # fmt: skip
        else:
            off = {**turn[0], "content": "Hi there. " + turn[0]["content"]}
            uncached = openai_turn(client, [off, *turn[1:]], 2)["ttft_s"]
        got = {key: statistics.median(p[key] for p in pairs) for key in pairs[0]}
        got["uncached_ttft_s"] = uncached
        got["speedup_vs_uncached"] = uncached / got["ttft_s"]
        got["pairs"] = pairs
        out[via] = got
        wait_idle(url)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--history", type=int, default=1500, help="tokens of served history")
    p.add_argument("--answer", type=int, default=48, help="tokens of the served answer")
    p.add_argument("--prefix-cache-mb", type=float, default=512.0)
    p.add_argument(
        "--questions",
        type=int,
        default=3,
        choices=(1, 2, 3),
        help="next turns per endpoint and round (each paired with its new tokens alone)",
    )
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from mlx_entropix.io.load import load

    import openai

    tok = load(None).tokenizer
    proc, url = start_server(args.prefix_cache_mb)
    try:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                               timeout=900)  # fmt: skip
        api_turn(url, {"prompt": "Hi", "max_tokens": 2})  # warm-up, not timed
        rounds = []
        for r in range(args.rounds):
            rounds.append(one_round(url, client, tok, TOPICS[r % len(TOPICS)], args))
            print(json.dumps(rounds[-1]), flush=True)
        info = httpx.get(f"{url}/api/info").json()
    finally:
        proc.terminate()
        proc.wait(30)
    summary = {}
    for via in ("api", "openai"):
        for key in ("ttft_s", "uncached_ttft_s", "new_alone_ttft_s", "ratio_to_new_alone",
                    "speedup_vs_uncached", "new_tokens", "cached_tokens"):  # fmt: skip
            summary[f"{via} {key} (median)"] = statistics.median(r[via][key] for r in rounds)
        summary[f"{via} ratio_to_new_alone (median of all pairs)"] = statistics.median(
            p["ratio_to_new_alone"] for r in rounds for p in r[via]["pairs"]
        )
    report = {
        "what": "follow-up turn TTFT with the prefix cache (benchmarks/prefix_cache.py)",
        "args": vars(args),
        "load_average_after": os.getloadavg(),
        "summary": summary,
        "goal": "follow-up TTFT <= 1.3x the new tokens' prefill alone",
        "goal_met": {
            v: summary[f"{v} ratio_to_new_alone (median)"] <= 1.3 for v in ("api", "openai")
        },  # fmt: skip
        "prefix_cache": info["prefix_cache"],
        "rounds": rounds,
    }
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
