"""Any exception -> ``{"code", "message"[, "param"]}`` with a stable code.

The bridge ships this shape as is; the HTTP server maps the same runtime codes
to statuses (``runtime.server.errors``). Codes not listed here are ``internal``.
"""

from __future__ import annotations

from ..errors import ThinklingError

CODES = ("invalid_json", "invalid_request", "unsupported_version", "model_not_found", "not_loaded",
         "busy", "context_length_exceeded", "missing_extra", "internal")

# runtime error code -> stable code (anything not listed is "internal")
RUNTIME_CODES = {
    "model_not_found": "model_not_found",
    "invalid_model_file": "model_not_found",  # the file is there but is not a usable model
    "context_length_exceeded": "context_length_exceeded",
    "invalid_request": "invalid_request",
    "busy": "busy",
    "not_loaded": "not_loaded",
    "missing_extra": "missing_extra",  # e.g. an ONNX model on an install without onnxruntime
}


def fields(code: str, message: str, param: str | None = None) -> dict:
    """The error shape (message capped at 2000 characters, ``param`` only when set)."""
    out = {"code": code, "message": str(message)[:2000]}
    if param:
        out["param"] = str(param)
    return out


def error_fields(exc: BaseException) -> dict:
    """``{"code", "message"[, "param"]}`` for any exception."""
    if isinstance(exc, ThinklingError):
        return fields(RUNTIME_CODES.get(exc.code, "internal"), exc.message, getattr(exc, "param", None))
    try:
        message = f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose __str__ raises
        message = type(exc).__name__
    return fields("internal", message)
