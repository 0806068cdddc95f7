"""Server settings: limits a public-facing tool needs even on localhost."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import SamplerConfig

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
DEFAULT_UI_DIR = Path(__file__).resolve().parent / "static"  # ui/ builds here (package data)


@dataclass
class ServerSettings:
    model: str | None = None  # path or HF id; None = the embedded SmolLM2-135M
    config: SamplerConfig | None = None  # sampler defaults; None = the model's calibrated ones
    max_queue: int = 16  # requests waiting behind the running one; more -> 503
    max_tokens_limit: int = 4096  # per-request cap (the schema allows 1..4096)
    # Prompt tokens per request; longer -> 400. 4096: one to two minutes of prefill on the
    # 2-core CPU (20-60 tokens/s, slower as the context grows).
    max_prompt_tokens: int = 4096
    max_body_bytes: int = 256 * 1024  # request bodies over this -> 413
    request_timeout_s: float = 300.0  # per-request generation time limit
    ping_s: float = 15.0  # SSE keep-alive comment on idle streams
    retry_after_s: int = 5  # Retry-After hint on a full queue (scaled by the queue length)
    ui_dir: Path | None = DEFAULT_UI_DIR  # served at / when it exists
    cors_origins: list[str] = field(default_factory=list)  # explicit origins only, never "*"
    allowed_hosts: list[str] | None = None  # Host header allow-list (DNS-rebinding guard)
    prompts_path: Path | None = None  # CSV for /api/prompts; None = the built-in set
    max_batch: int = 8  # rows decoded together across requests (a row per mode or choice)
    # Each stream's tokens bitwise equal to the same request served alone, whatever else is
    # in the batch (``runtime.blas.batch_invariant``: MKL's strict mode, set before loading).
    batch_invariant: bool = True
    # Memory for the prefix cache (prefilled prompts' KV reused by later prompts with the same
    # start, ``prefix_cache``); 0 = off. 512 MB: about 11,000 tokens of the embedded model.
    prefix_cache_mb: float = 512.0
