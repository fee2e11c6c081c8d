"""JSON in, JSON out, and the error envelope: the only shapes that cross the bridge.

Every entry point is wrapped by ``entry``: whatever happens inside, the caller
gets a JSON string with ``"v"``, never an exception. Runtime errors are
translated here, once, into the bridge's stable codes.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from typing import Any, Callable

from thinkling.runtime.api.errors import CODES
from thinkling.runtime.api.errors import fields as error_shape
from thinkling.runtime.api.errors import error_fields as runtime_error_fields
from thinkling.runtime.errors import ThinklingError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_INPUT_CHARS = 1 << 20  # the HTTP server's default max_body_bytes; a whole n_ctx of chat is far below it

_LAST_RESORT = '{"v": 1, "error": {"code": "internal", "message": "the bridge could not encode its reply"}}'


class BridgeError(Exception):
    """An error the bridge reports itself (bad input, nothing loaded, unknown id)."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def dumps(obj: dict) -> str:
    """ASCII-only JSON (safe for JNI and Swift strings whatever the text); no NaN."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=False, default=str, separators=(",", ":"))


def ok(**fields: Any) -> str:
    return dumps({"v": SCHEMA_VERSION, **fields})


def error_fields(exc: BaseException) -> dict:
    """``{"code", "message"[, "param"]}`` for any exception (``runtime.api.error_fields``
    plus the bridge's own errors)."""
    if isinstance(exc, BridgeError):
        return error_shape(exc.code, exc.message, exc.param)
    return runtime_error_fields(exc)


def error(exc: BaseException) -> str:
    return dumps({"v": SCHEMA_VERSION, "error": error_fields(exc)})


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_object(raw: Any, *, optional: bool = False) -> dict:
    """Parse a JSON object from ``raw`` (str or UTF-8 bytes).

    ``optional``: ``None`` or ``""`` mean ``{}`` (functions whose argument may be omitted).
    """
    if optional and (raw is None or (isinstance(raw, (str, bytes, bytearray)) and not raw)):
        return {}
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BridgeError("invalid_json", "the argument is not valid UTF-8") from None
    if not isinstance(raw, str):
        raise BridgeError("invalid_json", f"expected a JSON string, got {type(raw).__name__}")
    if len(raw) > MAX_INPUT_CHARS:
        raise BridgeError("invalid_request", f"request larger than {MAX_INPUT_CHARS} characters")
    try:
        obj = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise BridgeError("invalid_json", f"invalid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BridgeError("invalid_request", "the argument must be a JSON object")
    check_version(obj)
    return obj


def check_version(obj: dict) -> None:
    """Accept (and remove) the ``"v"`` a client echoes from the bridge's replies.

    A request without ``"v"`` speaks the current schema; one naming another
    version gets ``unsupported_version``, never a guess at what it meant.
    """
    if "v" not in obj:
        return
    v = obj.pop("v")
    if isinstance(v, bool) or v != SCHEMA_VERSION:
        raise BridgeError("unsupported_version",
                          f"this bridge speaks schema version {SCHEMA_VERSION}, the request says {v!r}",
                          param="v")


def request_id_arg(raw: Any) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 200:
        raise BridgeError("invalid_request", "request_id must be a non-empty string", param="request_id")
    return raw


def entry(fn: Callable[..., str]) -> Callable[..., str]:
    """Wrap an entry point: any exception becomes an error reply."""

    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        try:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as e:
                raise BridgeError("invalid_request", f"{fn.__name__}: {e}") from None
            return fn(*args, **kwargs)
        except Exception as e:
            if not isinstance(e, (BridgeError, ThinklingError)):
                log.exception("bridge entry point %s failed", fn.__name__)
            try:
                return error(e)
            except Exception:
                return _LAST_RESORT

    return wrapper
