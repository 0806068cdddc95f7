"""HTTP server: the SSE API for the UI (``/api/*``) and an OpenAI-compatible API (``/v1/*``).

``create_app(settings)`` builds the FastAPI app; ``mlx_server.py`` runs it under uvicorn.
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
