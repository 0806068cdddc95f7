"""The UI's API (``/api/*``): health, info, config, prompts, and generations streamed as SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException

from .. import __version__
from ..config import Mode, load_presets
from ..errors import EntropixError
from ..events import STATE_INFO, ErrorEvent
from ..io.prompts import load_prompts
from .deps import (
    INTERNAL_ERROR,
    engine_of,
    resolve_max_tokens,
    settings_of,
    sse_response,
    streamed,
)
from .engine import generation_work
from .schemas import (
    CompareRequest,
    ConfigResponse,
    GenerateRequest,
    GenerationFields,
    HealthResponse,
    InfoResponse,
    PromptOut,
    overrides_dict,
)
from .worker import JobFailed, JobStream


async def sse_events(stream: JobStream) -> AsyncIterator[ServerSentEvent]:
    """Engine events as named SSE events; the data is the shared event JSON."""
    async for item in stream:  # (row, event): each event names its mode, the row is not sent
        event = ErrorEvent(message=INTERNAL_ERROR) if isinstance(item, JobFailed) else item[1]
        yield ServerSentEvent(event=event.type, data=event.model_dump_json())


def start_generation(
    request: Request, body: GenerationFields, modes: Sequence[Mode]
) -> EventSourceResponse:
    """Validate (4xx before any byte of the stream), queue the job (503 when full), stream."""
    settings, engine = settings_of(request), engine_of(request)
    max_tokens = resolve_max_tokens(body.max_tokens, settings)
    ids = engine.prepare(body.chat(), body.system, max_tokens, settings.max_prompt_tokens)
    config = engine.config_for(overrides_dict(body.sampler), body.preset)
    work = generation_work(
        ids,
        modes,
        config=config,
        max_tokens=max_tokens,
        seed=body.seed,
        stop=body.stop,
        top_logprobs=body.top_logprobs,
        min_confidence=body.min_confidence,
        confidence_samples=body.confidence_samples,
    )
    stream = JobStream(
        request.app.state.worker, work, settings.request_timeout_s, label="/".join(modes)
    )
    return sse_response(sse_events(stream), stream, settings)


router = APIRouter(prefix="/api", tags=["entropix"])
SSE_EVENTS = streamed("SSE: `event: token|done|error`, `data:` the event JSON (events.py).")


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    worker = request.app.state.worker
    return HealthResponse(status="ok", model=engine_of(request).lm.info.name, queue=worker.status())


@router.get("/info", response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    settings, engine = settings_of(request), engine_of(request)
    return InfoResponse(
        model=engine.lm.info.as_dict(),
        runtime={**engine.runtime, "version": __version__},
        limits={
            "max_tokens": settings.max_tokens_limit,
            "max_prompt_tokens": settings.max_prompt_tokens,
            "max_body_bytes": settings.max_body_bytes,
            "request_timeout_s": settings.request_timeout_s,
            "max_queue": settings.max_queue,
            # rows decoded together across requests (1: one request at a time)
            "max_batch": request.app.state.worker.max_running,
            "batched_decoding": True,  # every model: one decode loop
        },
        prefix_cache=engine.prefix_cache_info(),
    )


@router.get("/config", response_model=ConfigResponse)
async def config(request: Request) -> ConfigResponse:
    presets = {name: p.model_dump() for name, p in load_presets().items()}
    return ConfigResponse(
        defaults=engine_of(request).config, states=dict(STATE_INFO), presets=presets
    )


@router.get("/prompts", response_model=list[PromptOut])
async def prompts(request: Request) -> list[PromptOut]:
    try:
        items = load_prompts(settings_of(request).prompts_path)
    except EntropixError as err:
        raise HTTPException(503, f"prompt set unavailable: {err}") from None
    return [PromptOut.model_validate(item.model_dump()) for item in items]


@router.post("/generate", responses=SSE_EVENTS)
async def api_generate(body: GenerateRequest, request: Request) -> EventSourceResponse:
    """Stream one generation: a `token` event per token, then `done` (or `error`)."""
    return start_generation(request, body, [body.mode])


@router.post("/compare", responses=SSE_EVENTS)
async def api_compare(body: CompareRequest, request: Request) -> EventSourceResponse:
    """Stream several modes for the same prompt and seed, interleaved token by token; every
    event carries its `mode`; the stream ends after each mode's `done`."""
    return start_generation(request, body, body.modes)
