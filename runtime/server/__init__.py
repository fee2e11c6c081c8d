"""The local HTTP endpoint: an OpenAI-compatible edge over ``runtime.Engine``.

FastAPI, pydantic and uvicorn are imported only here (the ``serve`` extra);
the runtime core never imports this package.
"""

from .app import create_app, serve
from .settings import ServerSettings, load_settings

__all__ = ["create_app", "serve", "ServerSettings", "load_settings"]
