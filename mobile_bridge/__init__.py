"""thinkling's mobile bridge: a tiny JSON-string API for Kotlin (Chaquopy) and
Swift (embedded CPython) apps.

Every function returns a JSON string carrying ``"v": 1``; none raises. Errors
are ``{"v": 1, "error": {"code", "message"[, "param"]}}`` with the stable codes
in ``mobile_bridge.jsonio.CODES``. ``poll``/``cancel`` take the request id as a
plain string; the other functions take a JSON string (or nothing).

    load_model('{"model": "gemma-3-270m", "threads": 4}')
    rid = json.loads(generate('{"messages": [{"role": "user", "content": "Hi"}]}'))["request_id"]
    poll(rid)  # {"v": 1, "request_id": ..., "state": ..., "events": [{"type": "answer", "text": ...}, ...]}

See docs/mobile.md for the event protocol, the expiry policy, what
memory_pressure does, and the Android/iOS glue in android/ and ios/.
"""

from __future__ import annotations

import atexit
from typing import Any

from .bridge import Bridge
from .jsonio import CODES, SCHEMA_VERSION, entry, ok, parse_object, request_id_arg

_bridge = Bridge()

__all__ = ["info", "list_models", "load_model", "unload_model", "generate", "poll", "set_callback", "cancel",
           "complete", "memory_pressure", "shutdown", "CODES", "SCHEMA_VERSION", "Bridge"]


@entry
def info() -> str:
    """Versions, state, the loaded model (with n_ctx, threads) and device facts."""
    return ok(**_bridge.info())


@entry
def list_models() -> str:
    """Models this device can load: ``{"models": [{"name", "description", "path", "available"}], "loaded"}``."""
    return ok(**_bridge.list_models())


@entry
def load_model(request_json: Any = None) -> str:
    """Load a model (replacing any loaded one); blocks while it loads, so call it off
    the UI thread. ``{"model", "threads", "n_ctx", "n_batch", "queue_size",
    "cpu_affinity": "big" | [cpu, ...]}``, all optional."""
    return ok(**_bridge.load_model(parse_object(request_json, optional=True)))


@entry
def unload_model() -> str:
    """Free the model; running and queued requests end with a ``cancelled`` event."""
    return ok(**_bridge.unload_model())


@entry
def generate(request_json: Any = None) -> str:
    """Queue a chat request (the HTTP chat body's fields); returns ``{"request_id"}`` at once."""
    return ok(**_bridge.generate(parse_object(request_json)))


@entry
def poll(request_id: Any = None, wait_ms: Any = 0) -> str:
    """Events since the last poll; waits up to ``wait_ms`` (max 10 s) for the first one."""
    return ok(**_bridge.poll(request_id_arg(request_id), wait_ms))


@entry
def cancel(request_id: Any = None) -> str:
    """Stop a request; it ends with a ``cancelled`` event within a token."""
    return ok(**_bridge.cancel(request_id_arg(request_id)))


@entry
def set_callback(fn: Any = None) -> str:
    """Push events to ``fn(event_json)`` (or ``obj.onEvent(event_json)``) instead of buffering them."""
    return ok(**_bridge.set_callback(fn))


@entry
def complete(request_json: Any = None) -> str:
    """Blocking generate: the whole result (``text``, ``reasoning``, ``finish_reason``, ``timings``, ``decision``)."""
    return ok(**_bridge.complete(parse_object(request_json)))


@entry
def memory_pressure(request_json: Any = None) -> str:
    """``{"level": "moderate"}`` forgets finished requests; ``"critical"`` (default) unloads the model."""
    return ok(**_bridge.memory_pressure(parse_object(request_json, optional=True)))


@entry
def shutdown() -> str:
    """Unload, drop the callback and every request. The bridge can be loaded again afterwards."""
    return ok(**_bridge.shutdown())


atexit.register(shutdown)  # free the native model deterministically when the interpreter exits
