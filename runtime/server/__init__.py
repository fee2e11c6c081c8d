"""The local HTTP endpoint: an OpenAI-compatible edge over ``runtime.Engine``.

FastAPI, pydantic and uvicorn are imported only here (the ``serve`` extra);
the runtime core never imports this package. The names below are loaded on
first use, so ``runtime.server.cli`` (which only registers the ``serve``
subcommand) imports on a core install that lacks the extra.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"create_app": ".app", "serve": ".app", "ServerSettings": ".settings",
            "load_settings": ".settings"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
