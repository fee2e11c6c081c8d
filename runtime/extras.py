"""Optional dependency groups ("extras" in pyproject.toml) and the typed error
for a missing one, so every edge can say which extra to install instead of
showing an ImportError's traceback."""

from __future__ import annotations

import importlib.util

from .errors import MissingExtra

# top-level module -> the extra of pyproject.toml that installs it
MODULE_EXTRA = {
    "fastapi": "serve", "uvicorn": "serve", "starlette": "serve", "anyio": "serve",
    "pydantic": "serve", "pydantic_settings": "serve", "prometheus_client": "serve",
    "safetensors": "convert", "tqdm": "convert",
    "onnx": "onnx", "onnxruntime": "onnx", "onnx_ir": "onnx", "tokenizers": "onnx",
    "matplotlib": "bench", "psutil": "bench",
    "httpx": "test", "openai": "test",
    "torch": "distill", "transformers": "distill", "peft": "distill",
}


def missing_extra(exc: BaseException, feature: str | None = None) -> MissingExtra | None:
    """The ``MissingExtra`` behind ``exc`` when it is an import of an optional
    package that is not installed; None for any other error (a real bug)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = MODULE_EXTRA.get(top)
    return MissingExtra(top, extra, feature) if extra else None


def require(feature: str, extra: str, *modules: str) -> None:
    """Raise ``MissingExtra`` now if one of ``modules`` (from ``extra``) is
    absent: before a long run whose later step needs it (``bench latency
    --plot``), or before a command reads its inputs (``thinkling convert``)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(module, extra, feature)
