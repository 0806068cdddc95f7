"""HTTP server: ``create_app(settings)`` builds the FastAPI app, ``mlx_server.py`` runs it."""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app"]
