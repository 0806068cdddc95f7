"""The loaded model as the server sees it: request validation and the jobs the worker runs.

``Engine.load`` runs in the worker thread (MLX state is per thread). Validation runs on the
event loop, before a stream starts, so bad input is a 4xx and not an event; it uses its own
copy of the tokenizer because Hugging Face tokenizers must not be shared across threads.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import Mode, SamplerConfig, apply_preset, first_error
from ..engine.agreement import samples_for
from ..engine.batch import BatchDecoder
from ..engine.confidence import with_abstention
from ..engine.fork import fork_rows
from ..engine.generate import Prompt, generate_rows, prepare_prompt
from ..engine.prefix_cache import PrefixCache
from ..engine.replica import ReplicatedDecoder
from ..errors import EntropixError, InvalidRequestError, PromptTooLongError
from ..events import ErrorEvent, Event
from ..io.load import LoadedModel, load
from ..io.warmup import FirstRun
from ..runtime.device import runtime_info
from ..runtime.distributed import init_group
from .settings import ServerSettings
from .worker import IDLE

log = logging.getLogger("mlx_entropix.server")


@dataclass
class Engine:
    lm: LoadedModel  # the worker thread's
    checker: LoadedModel  # same info, a tokenizer copy for the event loop
    config: SamplerConfig  # the server's sampler defaults
    runtime: dict[str, Any]
    model_id: str  # the id /v1/models reports
    token_bytes: TokenBytes  # worker thread only (uses the worker's tokenizer)
    # Decodes the rows of all running requests as one batch (worker thread only), every
    # model's; under mlx.launch every rank's (rank 0's schedule, ``replica.py``).
    decoder: BatchDecoder
    # A cold kernel cache: uncompiled until the background build is done (``io.warmup``)
    first_run: FirstRun | None = None

    @classmethod
    def load(cls, settings: ServerSettings) -> Engine:
        ranks = init_group()
        lm = load(settings.model, group=ranks)  # split under mlx.launch
        engine = cls(
            lm=lm,
            checker=dataclasses.replace(lm, tokenizer=copy.deepcopy(lm.tokenizer)),
            config=settings.config or lm.default_config,
            runtime=runtime_info().as_dict(),
            model_id=Path(lm.info.path).stem if settings.model is None else str(settings.model),
            token_bytes=TokenBytes(lm),
            decoder=BatchDecoder(lm) if ranks is None else ReplicatedDecoder(lm, ranks),
        )
        prefix = PrefixCache(int(settings.prefix_cache_mb * 2**20))
        engine.first_run = FirstRun.start(lm, settings.model, say=log.warning)
        if engine.first_run is not None:
            engine.first_run.report_progress(15.0)
        # Warm-up: the first forward pass compiles kernels; keep that out of request latency
        # (the requests' path, and fork mode's where that is another one). Followers replay
        # rank 0's (``follow``).
        leader = ranks is None or ranks.rank() == 0
        for modes in (["entropix"], ["fork"]) if leader else ():
            for _, event in generate_rows(lm, "Hi", modes=modes, seeds=[0], max_tokens=2,
                                          top_logprobs=0, decoder=engine.decoder):  # fmt: skip
                if isinstance(event, ErrorEvent):  # a broken model (NaN logits): say so now
                    log.warning("the warm-up (%s, 'Hi') failed: %s", modes[0], event.message)
        # After the warm-up (it counts for nothing). Under mlx.launch the followers start
        # theirs at rank 0's word (``ReplicatedDecoder.use_prefix_cache``).
        if prefix.max_bytes > 0 and leader:
            engine.decoder.use_prefix_cache(prefix)
        return engine

    def prefix_cache_info(self) -> dict[str, Any] | None:
        """The prefix cache's counters (read from any thread: plain numbers)."""
        prefix = self.decoder.prefix_cache
        if prefix is None or self.decoder.extender is None:
            return None
        ext = self.decoder.extender  # what it still fills in while idle
        return {**prefix.info(), "filling": ext.current is not None or bool(ext.waiting)}

    def idle_step(self) -> bool:
        """Worker thread, while no job runs: a layer of background work, False when none."""
        self.compiled_if_ready()
        return self.decoder.idle_step()

    def compiled_if_ready(self) -> None:
        """Worker thread: compiled from now on once the kernels are built, when no request is
        decoding (a stream never changes functions midway)."""
        busy = bool(self.decoder.requests)
        if self.first_run is not None and not busy and self.first_run.resume_if_ready():
            self.runtime = runtime_info().as_dict()
            self.first_run = None

    def close(self) -> None:
        """Worker thread, after its last job: under ``mlx.launch`` tell the followers to exit
        (in this thread, so the message is ordered after every step's collectives). A follower
        that is already gone is no reason to fail the shutdown."""
        if not isinstance(self.decoder, ReplicatedDecoder):
            return
        try:
            self.decoder.close()
        except RuntimeError as err:
            log.warning("could not tell the other ranks to exit: %s", err)

    # ---------------------------------------------------------------- event-loop side
    def prepare(
        self, prompt: Prompt, system: str | None, max_tokens: int, max_prompt_tokens: int | None
    ) -> list[int]:
        """Prompt ids, or InvalidRequestError / PromptTooLongError (-> 400): over the model's
        context or over the server's prompt cap (``--max-prompt-tokens``)."""
        ids = prepare_prompt(self.checker, prompt, system=system, max_tokens=max_tokens)
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise PromptTooLongError(
                f"the prompt is {len(ids)} tokens; this server takes at most "
                f"{max_prompt_tokens} prompt tokens per request (--max-prompt-tokens)"
            )
        return ids

    def config_for(self, overrides: dict[str, Any], preset: str | None = None) -> SamplerConfig:
        """The server's defaults, then the preset's overrides, then the request's."""
        try:
            return apply_preset(self.config, preset).merged(overrides)
        except ValidationError as err:
            raise InvalidRequestError(f"sampler.{first_error(err)}") from None


def generation_work(
    ids: list[int],
    modes: Sequence[Mode],
    *,
    config: SamplerConfig,
    max_tokens: int,
    seed: int | None,
    stop: Sequence[str],
    top_logprobs: int,
    n: int = 1,
    fmt: str = "chat",
    min_confidence: float | None = None,
    confidence_samples: int | None = None,
) -> Callable[[Engine, Callable[[], bool]], Iterator[tuple[int, Event]]]:
    """The job for one mode, or several interleaved token by token (the compare view), or
    ``n`` choices of one mode (OpenAI's ``n``). It yields ``(row, event)``: row r is
    ``modes[r]``, or choice r of the one mode.

    ``generate_rows`` (the CLI's path too) puts the rows in the engine's shared batch, a fork
    row as a request of its own; the job yields ``IDLE`` while it has nothing (a prefill layer,
    the others' step), so a long prompt does not hold up the other requests. Each row draws
    from its own (seed, step) stream: the tokens are those of separate runs. Without a seed,
    one is chosen here: every mode shares it, choice i of ``n`` runs with seed + i.
    ``confidence_samples``: hidden rows beside the rows but fork (``engine/agreement.py``; None:
    the format's default), their events never sent."""
    if n > 1 and len(modes) != 1:
        raise InvalidRequestError("several choices (n > 1) take one mode")
    base = secrets.randbelow(2**31) if seed is None else seed
    rows = [(modes[0], base + i) for i in range(n)] if n > 1 else [(m, base) for m in modes]
    batched = [r for r, (m, _) in enumerate(rows) if m != "fork"]
    groups = [batched] + [[r] for r, (m, _) in enumerate(rows) if m == "fork"]

    def work(engine: Engine, should_stop: Callable[[], bool]) -> Iterator[tuple[int, Event]]:
        engine.compiled_if_ready()
        streams: list[tuple[list[int], Iterator[Any]]] = []
        for group in (g for g in groups if g):
            try:  # the rows but fork, or a fork row (a request of its own)
                gen = generate_rows(
                    engine.lm, ids, modes=[rows[r][0] for r in group],
                    seeds=[rows[r][1] for r in group], config=config, max_tokens=max_tokens,
                    stop=stop, top_logprobs=top_logprobs, should_stop=should_stop,
                    idle=True, fmt=fmt, decoder=engine.decoder,
                    confidence_samples=confidence_samples if group is batched else 0,
                )  # fmt: skip
            except EntropixError as err:
                for r in group:
                    yield r, ErrorEvent(mode=rows[r][0], message=str(err))
                continue
            streams.append((group, gen))
        try:
            while streams:
                for entry in list(streams):
                    group, gen = entry
                    try:
                        item = next(gen)
                    except StopIteration:
                        streams.remove(entry)
                        continue
                    except EntropixError as err:  # the rows still running end with the error
                        item = (0, ErrorEvent(mode=rows[group[0]][0], message=str(err)))
                    if item is IDLE:  # nothing for this job yet (a prefill layer, others' step)
                        yield IDLE
                        continue
                    if isinstance(item[1], ErrorEvent):
                        streams.remove(entry)
                    # the batch's row -> the job's row; below min_confidence: abstained
                    yield group[item[0]], with_abstention(item[1], min_confidence)
        finally:  # cancelled or failed: the rows leave the shared batch now
            for _, gen in streams:
                gen.close()  # type: ignore[attr-defined]

    # The worker's slots: one per row, a fork row's branches each (the rows it decodes).
    hidden = samples_for(confidence_samples, fmt, [rows[r][0] for r in batched]) if batched else 0
    work.size = hidden + sum(fork_rows(config) if m == "fork" else 1 for m, _ in rows)  # type: ignore[attr-defined]
    return work


class TokenBytes:
    """The raw bytes of a token (OpenAI's ``logprobs.content[].bytes``). Worker thread only.

    A token may hold part of a multi-byte character, so its bytes are read from the vocabulary
    (byte-level BPE or SentencePiece byte fallback), not from a decode of the token alone.
    """

    def __init__(self, lm: LoadedModel):
        self._hf = lm.tokenizer.hf
        decoder = json.loads(self._hf.backend_tokenizer.to_str()).get("decoder") or {}
        kinds = [decoder.get("type")] + [d.get("type") for d in decoder.get("decoders", [])]
        self._byte_level = "ByteLevel" in kinds
        self._unbyte = _unicode_to_bytes()
        self.of = lru_cache(maxsize=65536)(self._of)

    def _of(self, token_id: int) -> bytes:
        piece = self._hf.convert_ids_to_tokens(token_id)
        if isinstance(piece, str):
            if self._byte_level and all(c in self._unbyte for c in piece):
                return bytes(self._unbyte[c] for c in piece)
            if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                return bytes([int(piece[3:5], 16)])  # SentencePiece byte fallback
            if not self._byte_level:
                return piece.replace("\u2581", " ").encode()
        return self._hf.decode([token_id]).encode()


def _unicode_to_bytes() -> dict[str, int]:
    """GPT-2's reversible byte <-> printable character map of byte-level BPE vocabularies, from
    the character back to its byte."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in keep]  # to 256, 257, ... in byte order
    return {chr(b): b for b in keep} | {chr(256 + i): b for i, b in enumerate(moved)}
