"""The FastAPI app: the UI's SSE API (``/api/*``), the OpenAI API (``/v1/*``) and the built UI."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .. import __version__
from . import errors
from .api import router as api_router
from .completions import router as completions_router
from .engine import Engine
from .guards import BodySizeLimit, HeadAsGet, HostGuard, JsonCORS
from .openai_api import router as openai_router
from .settings import ServerSettings
from .worker import Worker

NO_UI_PAGE = """<!doctype html><meta charset="utf-8"><title>mlx-entropix</title>
<p>mlx-entropix server is running. The UI is not built (<code>cd ui && bun install
--frozen-lockfile && bun run build</code>, as in the README). API: <a href="/docs">/docs</a>,
<a href="/api/info">/api/info</a>.</p>"""


class UiFiles(StaticFiles):
    """The built UI. Its pages name their scripts by content hash, so a browser must check a
    page again on each load (``no-cache``): kept by heuristic caching, an old page would ask,
    after a rebuild, for scripts that are gone (a blank page) or cached (the old UI)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".html"):
            response.headers["Cache-Control"] = "no-cache"
        return response


def make_worker(settings: ServerSettings) -> Worker[Engine]:
    """The model thread (not started): up to ``max_batch`` rows of requests, one batch."""
    return Worker(
        lambda: Engine.load(settings),
        settings.max_queue,
        settings.retry_after_s,
        max_running=settings.max_batch,
    )


def create_app(settings: ServerSettings | None = None, worker: Worker[Engine] | None = None):
    """The app. ``worker``: an already started (model loaded) worker, else the lifespan makes
    one; ``mlx_server.py`` loads first so a bad model path is one clear line, not a traceback."""
    settings = settings or ServerSettings()
    if "*" in settings.cors_origins:
        raise ValueError("wildcard CORS is not allowed: list the origins explicitly")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = worker or make_worker(settings)
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
    app.include_router(api_router)
    app.include_router(openai_router)
    app.include_router(completions_router)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HeadAsGet)
    if settings.cors_origins:
        app.add_middleware(
            JsonCORS,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization"],
        )
    if settings.allowed_hosts:
        app.add_middleware(HostGuard, allowed_hosts=list(settings.allowed_hosts))

    ui_dir = settings.ui_dir
    if ui_dir is not None and (ui_dir / "index.html").is_file():
        # The UI answers what no route matches, as the router's default (html=True serves
        # index.html at /). Not a mount at "/": a mount matches every path, so a wrong method
        # on an API route would reach the static files (404) instead of the route (405).
        ui = UiFiles(directory=ui_dir, html=True)

        async def ui_or_404(scope: Scope, receive: Receive, send: Send) -> None:
            # A path of the APIs no route matches is not found, whatever the method: the
            # static files would answer a POST there 405 "allowed: GET, HEAD".
            if errors.in_family(scope["path"], "/api") or errors.is_openai(scope["path"]):
                raise HTTPException(404)
            await ui(scope, receive, send)

        app.router.default = ui_or_404
    else:

        @app.get("/", include_in_schema=False)
        async def no_ui() -> HTMLResponse:
            return HTMLResponse(NO_UI_PAGE)

    return app
