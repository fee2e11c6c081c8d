"""Every error leaves the server in OpenAI's shape:
``{"error": {"message", "type", "param", "code"}}``.

Typed runtime errors are translated here, once; so are FastAPI's own 404/405
and validation errors. Validation errors are 400 (OpenAI's status for a bad
request), not FastAPI's 422.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ContextLengthExceeded, EngineBusy, InvalidRequest, ModelNotFound, ThinklingError
from .schemas import UNION_TAGS

log = logging.getLogger(__name__)

# OpenAI-style error "type" by HTTP status.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error", 408: "timeout_error",
          405: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          429: "rate_limit_error", 503: "unavailable_error"}

# Status for each typed runtime error code (runtime/errors.py).
_STATUS = {"invalid_request": 400, "context_length_exceeded": 400, "model_not_found": 404,
           "busy": 429, "not_loaded": 503, "cancelled": 503, "invalid_model_file": 503}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
               415: "unsupported_media_type"}


class NotReady(ThinklingError):
    """The model is still loading (or failed to load): 503."""

    code = "model_not_ready"


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"),
                      "param": param, "code": code}}


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param, code), status_code=status, headers=headers)


def status_for(exc: ThinklingError) -> int:
    if isinstance(exc, NotReady):
        return 503
    return _STATUS.get(exc.code, 500)


def runtime_error_body(exc: ThinklingError, prompt_param: str | None = None) -> tuple[int, dict, dict]:
    """``(status, body, headers)`` for a typed runtime error. ``prompt_param`` names
    the request field a too-long prompt came from ("messages" or "prompt")."""
    status, headers, param = status_for(exc), {}, None
    if isinstance(exc, InvalidRequest):
        param = exc.param
    elif isinstance(exc, ContextLengthExceeded):
        param = prompt_param
    elif isinstance(exc, ModelNotFound):
        param = "model"
    elif isinstance(exc, EngineBusy):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    elif status == 503:
        headers["Retry-After"] = "1"
    return status, error_body(exc.message, status, param, exc.code), headers


def _prompt_param(request: Request) -> str:
    return "messages" if request.url.path.endswith("/chat/completions") else "prompt"


def param_from_loc(loc) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    parts: list[str] = []
    for item in loc[1:] if loc and loc[0] == "body" else loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item not in UNION_TAGS:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or None


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if not errors:
        return error_response(400, "invalid request body", code="invalid_value")
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        pos = first["loc"][-1] if first.get("loc") else "?"
        return error_response(400, f"malformed JSON body: {reason} (at character {pos})", code="invalid_json")
    param = param_from_loc(first.get("loc", ()))
    if first.get("type") == "missing" and param is None:
        return error_response(400, "a JSON request body is required", code="missing_required_parameter")
    if first.get("type") == "missing":
        return error_response(400, f"missing required parameter: {param}", param=param,
                              code="missing_required_parameter")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f"{param}: " if param else "request body: "
    return error_response(400, f"{where}{first.get('msg', 'invalid value')}{more}", param=param,
                          code="invalid_value")


def install(app: FastAPI) -> None:
    """Register the handlers that give every error OpenAI's shape."""

    @app.exception_handler(ThinklingError)
    async def _typed(request: Request, exc: ThinklingError):
        status, body, headers = runtime_error_body(exc, _prompt_param(request))
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return validation_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        status = exc.status_code
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        # Our own code raises typed errors, never HTTPException: these come from
        # routing (404/405) or FastAPI's body parsing.
        if status == 404:
            message = f"no route for {request.method} {request.url.path}"
        elif status == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        elif status == 400 and exc.__cause__ is not None:
            # FastAPI's JSON parsing failed beyond a syntax error: nesting too
            # deep (RecursionError), an integer too long to convert (ValueError)...
            return error_response(400, f"request body is not usable JSON ({type(exc.__cause__).__name__})",
                                  code="invalid_json")
        return error_response(status, message, code=_HTTP_CODES.get(status, "http_error"),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Last resort: a bug. Logged with its traceback; the fuzz test hunts these.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error", code="internal_error")
