"""mlx-entropix server: the UI, an SSE API with per-token metrics, and an OpenAI-compatible API.

    uv run mlx_server.py                       # http://127.0.0.1:8000 (the embedded model)
    mlx-entropix-server                        # the same, as the installed console script
    uv run mlx_server.py --model path/or/org-repo --config my_sampler.json --port 8080

Bound to 127.0.0.1 by default. The model is loaded once, before the server accepts requests,
in the one thread that serves every generation (requests queue, first come first served).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..config import SamplerConfig, config_file_error
from ..errors import EntropixError
from ..io.prompts import load_prompts
from .settings import DEFAULT_UI_DIR, LOOPBACK_HOSTS, ServerSettings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--model", default=None, help="GGUF file, HF/MLX dir or HF repo id")
    p.add_argument("--config", default=None, help="sampler config (.json/.toml) for the defaults")
    p.add_argument("--max-queue", type=int, default=16, help="requests waiting; more -> 503")
    p.add_argument("--max-tokens", type=int, default=4096, help="per-request max_tokens cap")
    p.add_argument(
        "--max-prompt-tokens",
        type=int,
        default=4096,
        help="per-request prompt cap in tokens; longer -> 400 (default 4096: one to two "
        "minutes of prefill on a 2-core CPU)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=8,
        help="rows decoded together across requests (continuous batching; a request takes "
        "one row per mode or choice; 1 = one request at a time; default 8)",
    )
    p.add_argument(
        "--no-batch-invariant",
        dest="batch_invariant",
        action="store_false",
        help="let MKL use its fastest kernels: a stream's metrics may then differ in the last "
        "bits with what else is in the batch (default: each stream bitwise as if alone)",
    )
    p.add_argument(
        "--prefix-cache-mb",
        type=float,
        default=512.0,
        help="memory for prefilled prompts kept for reuse by later prompts that start the same "
        "(a conversation's next turn; 0 = off; default 512: ~11,000 tokens of the embedded model)",
    )
    p.add_argument("--max-body", type=int, default=256 * 1024, help="request body cap (bytes)")
    p.add_argument("--timeout", type=float, default=300.0, help="per-request time limit (s)")
    p.add_argument("--ping", type=float, default=15.0, help="SSE keep-alive interval (s)")
    p.add_argument("--ui", default=str(DEFAULT_UI_DIR), help="built UI to serve at / ('' = none)")
    p.add_argument("--prompts", default=None, help="prompt CSV for /api/prompts")
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="extra CORS origin, e.g. http://localhost:5173 (repeatable; no wildcard)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p.parse_args(argv)


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_from(args: argparse.Namespace) -> ServerSettings:
    """Validated settings; bad values raise ``ValueError``/``EntropixError`` with one line."""
    for name in ("max_queue", "max_tokens", "max_body", "max_prompt_tokens", "max_batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if not 1 <= args.max_tokens <= 4096:
        raise ValueError("--max-tokens must lie in [1, 4096]")
    if not 0 <= args.port <= 65535:  # else uvicorn's OverflowError, after the model's load
        raise ValueError(f"--port must lie in [0, 65535] (got {args.port})")
    # Written so that NaN fails too (every comparison with NaN is false): a NaN megabyte
    # count crashed the load, a NaN timeout meant no time limit at all.
    if not 0 <= args.prefix_cache_mb < math.inf:
        raise ValueError("--prefix-cache-mb must be at least 0 (0 turns the prefix cache off)")
    if not (args.timeout > 0 and args.ping >= 0):
        raise ValueError("--timeout must be positive and --ping non-negative")
    if "*" in args.allow_origin:
        raise ValueError("--allow-origin '*' is not allowed: list the origins explicitly")
    for origin in args.allow_origin:  # a browser's Origin header: no path, not even "/"
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s]+", origin):
            raise ValueError(
                f"--allow-origin {origin!r}: an origin is scheme://host[:port], without a path "
                "or trailing slash, e.g. http://localhost:5173"
            )
    config = None
    if args.config:
        try:
            config = SamplerConfig.from_file(args.config)
        except FileNotFoundError:
            raise ValueError(f"sampler config not found: {args.config}") from None
        except Exception as err:  # a rejected value, JSON/TOML syntax, unreadable file
            raise ValueError(
                f"bad sampler config {args.config}: {config_file_error(err)}"
            ) from None
    ui = Path(args.ui) if args.ui else None
    if ui is not None and ui != DEFAULT_UI_DIR and not (ui / "index.html").is_file():
        # (the default folder is empty until the UI is built: the server then says so at /)
        raise ValueError(f"--ui {args.ui}: no index.html there (a built UI; '' = none)")
    if args.prompts:  # a bad file is this one line, not a 503 when the UI first asks for it
        path = Path(args.prompts)
        if path.exists() and not path.is_dir() and not path.is_file():  # a pipe: read once
            raise ValueError(f"--prompts {path}: a file, not a pipe (read at every request)")
        load_prompts(path)
    return ServerSettings(
        model=args.model,
        config=config,
        max_queue=args.max_queue,
        max_tokens_limit=args.max_tokens,
        max_prompt_tokens=args.max_prompt_tokens,
        max_batch=args.max_batch,
        batch_invariant=args.batch_invariant,
        prefix_cache_mb=args.prefix_cache_mb,
        max_body_bytes=args.max_body,
        request_timeout_s=args.timeout,
        ping_s=args.ping,
        ui_dir=ui,
        prompts_path=Path(args.prompts) if args.prompts else None,
        cors_origins=list(args.allow_origin),
        # A loopback server answers only loopback Host headers: a web page cannot reach it
        # through DNS rebinding (IPv6 too: ``guards.host_name`` reads "[::1]:port").
        allowed_hosts=list(LOOPBACK_HOSTS) if _is_loopback(args.host) else None,
    )


SAME_CTRL_C_S = 0.5  # a second SIGINT this soon after the first is the same Ctrl-C


def one_ctrl_c(server: Any, window_s: float = SAME_CTRL_C_S) -> None:
    """Make a uvicorn server take one Ctrl-C as one. Under ``uv run`` (the README's command) a
    terminal's Ctrl-C reaches both uv and this process, and uv forwards it: two SIGINTs at
    once, and uvicorn took the second as "force quit", cutting the open streams mid-body
    (clients: a network error, no done event; the log: tracebacks). A SIGINT later than
    ``window_s`` still forces the quit."""
    handle = server.handle_exit
    first: list[float] = []

    def handle_exit(sig: int, frame: Any) -> None:
        if sig == signal.SIGINT:
            now = time.monotonic()
            if first and now - first[0] < window_s:
                return
            first[:] = first or [now]
        handle(sig, frame)

    server.handle_exit = handle_exit  # capture_signals installs server.handle_exit


EXIT_INTERRUPTED = 130


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 served and stopped, 2 bad flags or a model that cannot be loaded, 3 the
    server could not start (the port is taken), 130 Ctrl-C before it served (imports, load)."""
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s: %(message)s")
    try:
        settings = settings_from(args)
    except (ValueError, EntropixError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return serve(args, settings)
    except KeyboardInterrupt:  # before uvicorn took the signals: one line, not a traceback
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def serve(args: argparse.Namespace, settings: ServerSettings) -> int:
    """Load the model, then serve until Ctrl-C (uvicorn's own handling from then on)."""
    import uvicorn

    from ..runtime.blas import batch_invariant
    from ..runtime.distributed import rank
    from .app import create_app, make_worker
    from .engine import Engine

    if settings.batch_invariant:  # before anything computes (MKL reads it at its first call)
        batch_invariant()
    if rank() != 0:  # under mlx.launch: rank 0 serves, the others replay its schedule
        # Ctrl-C reaches every rank of the terminal's process group; a follower interrupted
        # inside a collective would leave rank 0 waiting in it. Followers exit when rank 0 says
        # so at its shutdown (or when it is gone) instead.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            engine = Engine.load(settings)
        except EntropixError as err:
            print(f"error (rank {rank()}): {err}", file=sys.stderr)
            return 2
        engine.decoder.follow()  # type: ignore[attr-defined]  (a ReplicatedDecoder)
        return 0

    # Load before serving, in the worker thread that will own the model: a bad --model is one
    # clear line here rather than a traceback from the ASGI lifespan.
    start = time.perf_counter()
    worker = make_worker(settings)
    try:
        engine = worker.start().wait_ready()
    except EntropixError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # The loading thread cannot be stopped, and an interpreter that exits while it runs
        # MLX code aborts ("terminate called without an active exception", after a
        # traceback): nothing is served yet, so leave at once.
        print("\ninterrupted while loading the model", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)
    info = engine.lm.info
    print(
        f"loaded {info.name} ({info.compute_dtype}, context {info.context_length}) on "
        f"{engine.runtime['device']} in {time.perf_counter() - start:.1f} s",
        file=sys.stderr,
    )
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: reachable from other machines, no auth",
            file=sys.stderr,
        )
    app = create_app(settings, worker=worker)
    server = uvicorn.Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level)
    )
    one_ctrl_c(server)
    try:  # as uvicorn.run: after its shutdown, uvicorn raises the signal it caught again
        server.run()
    except KeyboardInterrupt:
        pass
    return 0 if server.started else 3  # 3: uvicorn's startup failure (e.g. the port is taken)


if __name__ == "__main__":
    sys.exit(main())
