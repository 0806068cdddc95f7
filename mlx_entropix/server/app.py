"""The FastAPI app: the UI's SSE API (``/api/*``), the OpenAI API (``/v1/*``) and the built UI.

``create_app(settings)`` builds it; the lifespan starts the worker thread, which loads the model
once (in that thread) before the first request is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .. import __version__
from ..config import Mode
from ..errors import EntropixError, InvalidRequestError
from ..events import STATE_INFO, ErrorEvent
from ..prompts import load_prompts
from . import errors
from .engine import Engine, generation_work
from .limits import BodySizeLimit
from .schemas import (
    DEFAULT_MAX_TOKENS,
    CompareRequest,
    ConfigResponse,
    ErrorBody,
    GenerateRequest,
    GenerationFields,
    HealthResponse,
    InfoResponse,
    PromptOut,
    overrides_dict,
)
from .settings import ServerSettings
from .worker import JobFailed, JobStream, Worker

INTERNAL_ERROR = "internal error while generating (details in the server log)"
# A client that stops reading (full socket buffers) is dropped after this long, which
# cancels its generation like a disconnect.
SEND_TIMEOUT_S = 30.0

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Invalid request (e.g. prompt over the context)."},
    413: {"model": ErrorBody, "description": "Request body too large."},
    422: {"model": ErrorBody, "description": "Body does not match the schema."},
    503: {"model": ErrorBody, "description": "Queue full: retry after Retry-After seconds."},
}
SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "SSE: `event: token|done|error`, `data:` the event JSON (events.py).",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


def engine_of(request: Request) -> Engine:
    return request.app.state.worker.resource


def settings_of(request: Request) -> ServerSettings:
    return request.app.state.settings


def resolve_max_tokens(max_tokens: int | None, settings: ServerSettings) -> int:
    """The request's max_tokens, or the default; over the server's cap is a 400."""
    if max_tokens is None:
        return min(DEFAULT_MAX_TOKENS, settings.max_tokens_limit)
    if max_tokens > settings.max_tokens_limit:
        raise InvalidRequestError(
            f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}"
        )
    return max_tokens


async def sse_events(stream: JobStream) -> AsyncIterator[ServerSentEvent]:
    """Engine events as named SSE events; the data is the shared event JSON."""
    async for item in stream:
        if isinstance(item, JobFailed):
            item = ErrorEvent(message=INTERNAL_ERROR)
        yield ServerSentEvent(event=item.type, data=item.model_dump_json())


def start_generation(
    request: Request, body: GenerationFields, modes: Sequence[Mode]
) -> EventSourceResponse:
    """Validate (4xx before any byte of the stream), queue the job (503 when full), stream."""
    settings, engine = settings_of(request), engine_of(request)
    max_tokens = resolve_max_tokens(body.max_tokens, settings)
    ids = engine.prepare(body.chat(), body.system, max_tokens)
    config = engine.config_for(overrides_dict(body.sampler))
    work = generation_work(
        ids,
        modes,
        config=config,
        max_tokens=max_tokens,
        seed=body.seed,
        stop=body.stop,
        top_logprobs=body.top_logprobs,
    )
    stream = JobStream(
        request.app.state.worker, work, settings.request_timeout_s, label="/".join(modes)
    )
    return EventSourceResponse(
        sse_events(stream), ping=settings.ping_s, send_timeout=SEND_TIMEOUT_S
    )


api = APIRouter(prefix="/api", tags=["entropix"])


@api.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    worker = request.app.state.worker
    return HealthResponse(status="ok", model=engine_of(request).lm.info.name, queue=worker.status())


@api.get("/info", response_model=InfoResponse)
async def info(request: Request) -> InfoResponse:
    settings, engine = settings_of(request), engine_of(request)
    return InfoResponse(
        model=engine.lm.info.as_dict(),
        runtime={**engine.runtime, "version": __version__},
        limits={
            "max_tokens": settings.max_tokens_limit,
            "max_body_bytes": settings.max_body_bytes,
            "request_timeout_s": settings.request_timeout_s,
            "max_queue": settings.max_queue,
        },
    )


@api.get("/config", response_model=ConfigResponse)
async def config(request: Request) -> ConfigResponse:
    return ConfigResponse(defaults=engine_of(request).config, states=dict(STATE_INFO))


@api.get("/prompts", response_model=list[PromptOut])
async def prompts(request: Request) -> list[PromptOut]:
    try:
        items = load_prompts(settings_of(request).prompts_path)
    except EntropixError as err:
        raise HTTPException(503, f"prompt set unavailable: {err}") from None
    return [PromptOut.model_validate(item.model_dump()) for item in items]


@api.post("/generate", responses={**SSE_RESPONSE, **ERROR_RESPONSES})
async def api_generate(body: GenerateRequest, request: Request) -> EventSourceResponse:
    """Stream one generation: a `token` event per token, then `done` (or `error`)."""
    return start_generation(request, body, [body.mode])


@api.post("/compare", responses={**SSE_RESPONSE, **ERROR_RESPONSES})
async def api_compare(body: CompareRequest, request: Request) -> EventSourceResponse:
    """Stream several modes for the same prompt and seed, interleaved token by token; every
    event carries its `mode`; the stream ends after each mode's `done`."""
    return start_generation(request, body, body.modes)


NO_UI_PAGE = """<!doctype html><meta charset="utf-8"><title>mlx-entropix</title>
<p>mlx-entropix server is running. The UI is not built (<code>cd ui && npm ci && npm run build
</code>). API: <a href="/docs">/docs</a>, <a href="/api/info">/api/info</a>.</p>"""


def create_app(settings: ServerSettings | None = None, worker: Worker[Engine] | None = None):
    """The app. ``worker``: an already started (model loaded) worker, else the lifespan makes
    one; ``mlx_server.py`` loads first so a bad model path is one clear line, not a traceback."""
    from .openai_api import router as openai_router

    settings = settings or ServerSettings()
    if "*" in settings.cors_origins:
        raise ValueError("wildcard CORS is not allowed: list the origins explicitly")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        own = worker or Worker(
            lambda: Engine.load(settings), settings.max_queue, settings.retry_after_s
        )
        if worker is None:
            own.start()
        await asyncio.to_thread(own.wait_ready)
        app.state.worker = own
        try:
            yield
        finally:
            own.close()

    app = FastAPI(
        title="mlx-entropix",
        version=__version__,
        description="Entropy-aware (entropix) sampling on MLX: tokens and their uncertainty, "
        "streamed over SSE, plus an OpenAI-compatible API.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.include_router(api)
    app.include_router(openai_router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization"],
        )
    if settings.allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))

    ui_dir = settings.ui_dir
    if ui_dir is not None and (ui_dir / "index.html").is_file():
        # Mounted last: /api and /v1 routes match first; html=True serves index.html at /.
        app.mount("/", StaticFiles(directory=ui_dir, html=True), name="ui")
    else:

        @app.get("/", include_in_schema=False)
        async def no_ui() -> HTMLResponse:
            return HTMLResponse(NO_UI_PAGE)

    return app
