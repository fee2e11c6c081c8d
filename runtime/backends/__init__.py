"""Backend registry. Each backend module is imported only when chosen, so a
GGUF-only install never imports onnxruntime and vice versa."""

from __future__ import annotations

import importlib

from ..extras import missing_extra
from .base import Backend, BackendOptions

# name -> "module:factory"; the factory is ``open(path, options) -> Backend``.
_BACKENDS: dict[str, str] = {
    "llama_cpp": "thinkling.runtime.backends.llama_cpp:open_backend",
    "onnx": "thinkling.runtime.backends.onnx:open_backend",
}


def open_backend(kind: str, path: str, options: BackendOptions) -> Backend:
    """Open ``path`` with the backend called ``kind``."""
    module_name, func = _BACKENDS[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:  # e.g. an ONNX model on an install without onnxruntime
        extra = missing_extra(e, feature=f"the {kind} backend")
        if extra is None:
            raise
        raise extra from None
    return getattr(module, func)(path, options)


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


__all__ = ["Backend", "BackendOptions", "open_backend", "available_backends"]
