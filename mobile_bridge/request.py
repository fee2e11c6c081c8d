"""The bridge's request body -> ``GenerationRequest``, in the standard library.

The body is the HTTP chat endpoint's (``runtime/server/schemas.py``, pydantic,
which a phone's Python may not have), and this module mirrors its rules field
by field: strict types, the same bounds, unknown fields ignored, fields whose
silent dropping would change the answer refused. ``tests/test_contract.py``
runs one table of cases through both transports so the two cannot drift apart.

Every problem is an ``InvalidRequest`` whose ``param`` names the field the way
the HTTP layer does (``messages[0].role``).
"""

from __future__ import annotations

import math
from typing import Any

from runtime.errors import InvalidRequest
from runtime.speculative import SPECULATIVE_MODES
from runtime.structured import response_format_from
from runtime.types import THINK_MODES, GenerationRequest, Message, SamplingParams

DEFAULT_MAX_TOKENS = 256  # the server's default_max_tokens
MAX_TOKENS_CAP = 2048  # the server's max_tokens_cap: larger values are clamped
ROLES = ("system", "developer", "user", "assistant")  # "developer" is treated as "system"
MAX_STOPS, MAX_STOP_CHARS = 8, 256

# name -> (kind, low, high, low_exclusive); kind "int" or "num"; None = unbounded
NUMBERS: dict[str, tuple[str, float | None, float | None, bool]] = {
    "max_tokens": ("int", 1, None, False),
    "max_completion_tokens": ("int", 1, None, False),
    "temperature": ("num", 0, 100, False),
    "top_p": ("num", 0, 1, True),
    "top_k": ("int", 0, 1 << 20, False),
    "min_p": ("num", 0, 1, False),
    "repeat_penalty": ("num", 0.01, 100, False),
    "frequency_penalty": ("num", -2, 2, False),
    "presence_penalty": ("num", -2, 2, False),
    "seed": ("int", -(1 << 63), (1 << 64) - 1, False),
    "reasoning_budget": ("int", 0, 1 << 31, False),
    "deadline_ms": ("num", 0, 86_400_000, True),
    "n": ("int", 1, 1, False),
    "top_logprobs": ("int", 0, 20, False),
}
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "frequency_penalty", "presence_penalty")


def _bad(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param)


def _number(body: dict, name: str) -> float | int | None:
    v = body.get(name)
    if v is None:
        return None
    kind, lo, hi, lo_open = NUMBERS[name]
    if isinstance(v, bool) or not isinstance(v, int if kind == "int" else (int, float)):
        raise _bad(name, "must be an integer" if kind == "int" else "must be a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise _bad(name, "must be finite")
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise _bad(name, f"must be {'>' if lo_open else '>='} {lo}")
    if hi is not None and v > hi:
        raise _bad(name, f"must be <= {hi}")
    return v


def _text(v: Any, param: str) -> str:
    if not isinstance(v, str):
        raise _bad(param, "must be a string")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(param, "must be valid Unicode (lone surrogate escape)") from None
    return v


def _bool(body: dict, name: str) -> bool | None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise _bad(name, "must be a boolean")
    return v


def _content(m: dict, p: str, role: str) -> str:
    v = m.get("content")
    if v is None:
        if role != "assistant":
            raise _bad(f"{p}.content", f"is required for role {role!r}")
        return ""
    if isinstance(v, list):
        parts = []
        for j, part in enumerate(v):
            pp = f"{p}.content[{j}]"
            if not isinstance(part, dict):
                raise _bad(pp, "must be an object")
            if part.get("type") != "text":
                raise _bad(f"{pp}.type", "only text parts are supported")
            parts.append(_text(part.get("text"), f"{pp}.text"))
        return "\n".join(parts)
    return _text(v, f"{p}.content")


def messages_from(value: Any) -> list[Message]:
    if value is None:
        raise _bad("messages", "missing required parameter")
    if not isinstance(value, list) or not value:
        raise _bad("messages", "must be a non-empty array")
    out = []
    for i, m in enumerate(value):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise _bad(p, "must be an object")
        role = m.get("role")
        if role not in ROLES:  # unhashable values compare unequal, never raise
            raise _bad(f"{p}.role", f"must be one of {ROLES}")
        out.append(Message("system" if role == "developer" else role, _content(m, p, role)))
    return out


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_STOPS:
        raise _bad("stop", f"must be a string or an array of at most {MAX_STOPS} strings")
    out = [_text(s, f"stop[{i}]") for i, s in enumerate(value)]
    if any(len(s) > MAX_STOP_CHARS for s in out):
        raise _bad("stop", f"stop strings are at most {MAX_STOP_CHARS} characters")
    return out


def _unsupported(body: dict) -> None:
    """Refuse what would change the answer if ignored (as the HTTP layer does)."""
    for name in ("stream", "n"):  # defaulted, not nullable, in the HTTP schema
        if name in body and body[name] is None:
            raise _bad(name, "must not be null")
    _bool(body, "stream")
    so = body.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise _bad("stream_options", "must be an object with a boolean include_usage")
    _number(body, "n")
    lb = body.get("logit_bias")
    if lb is not None and not isinstance(lb, dict):
        raise _bad("logit_bias", "must be an object")
    if lb:
        raise _bad("logit_bias", "logit_bias is not supported")
    for name in ("tools", "functions"):
        v = body.get(name)
        if v is not None and (not isinstance(v, list) or not all(isinstance(t, dict) for t in v)):
            raise _bad(name, "must be an array of objects")
        if v:
            raise InvalidRequest("tools and functions are not supported", param="tools")
    if body.get("tool_choice") not in (None, "none"):
        raise InvalidRequest("tool_choice is not supported", param="tool_choice")
    if _bool(body, "logprobs") or _number(body, "top_logprobs"):
        raise InvalidRequest("logprobs are not supported", param="logprobs")


def chat_request(body: dict) -> GenerationRequest:
    """Map a chat body (the HTTP chat endpoint's fields) to a runtime request.

    ``model`` is the caller's to check; unknown fields are ignored.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("the request must be a JSON object")
    model = body.get("model")
    if model is not None:
        _text(model, "model")
    nums = {name: _number(body, name) for name in NUMBERS}
    messages = messages_from(body.get("messages"))
    stop = _stops(body.get("stop"))
    think = body.get("think")
    if think is not None and think not in THINK_MODES:
        raise _bad("think", f"must be one of {THINK_MODES}")
    speculative = body.get("speculative")
    if speculative is not None and speculative not in SPECULATIVE_MODES:
        raise _bad("speculative", f"must be one of {SPECULATIVE_MODES}")
    _unsupported(body)
    sampling = {k: nums[k] for k in SAMPLING if nums[k] is not None}
    if nums["seed"] is not None:
        sampling["seed"] = nums["seed"] % (1 << 64)  # OpenAI seeds are int64; numpy wants >= 0
    asked = nums["max_completion_tokens"] or nums["max_tokens"] or DEFAULT_MAX_TOKENS
    deadline = nums["deadline_ms"]
    return GenerationRequest(messages=messages, max_tokens=min(asked, MAX_TOKENS_CAP),
                             sampling=SamplingParams(**sampling), stop=stop, think=think or "auto",
                             reasoning_budget=nums["reasoning_budget"],
                             # a subnormal deadline_ms must not round to 0 s (which the engine refuses)
                             deadline_s=max(deadline / 1000, 1e-9) if deadline else None,
                             speculative=speculative,
                             response_format=response_format_from(body.get("response_format")))
