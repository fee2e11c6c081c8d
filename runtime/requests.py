"""One mapping from a JSON request body to a ``GenerationRequest``.

The HTTP endpoint and the mobile bridge accept the same fields (the OpenAI
chat body plus thinkling's ``think``, ``reasoning_budget`` and ``deadline_ms``);
both call these functions so the two transports cannot drift apart. Standard
library only: the bridge runs where pydantic may not be installed.

Every problem is an ``InvalidRequest`` whose ``param`` names the field.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any

from .errors import InvalidRequest
from .types import THINK_MODES, GenerationRequest, Message, SamplingParams

ROLES = ("system", "user", "assistant")
ROLE_ALIASES = {"developer": "system"}  # newer OpenAI clients send "developer"
MESSAGE_KEYS = {"role", "content", "name", "reasoning_content"}  # name / echoed reasoning: ignored
MAX_STOPS = 16

# Fields shared by chat and raw completion bodies (besides messages / prompt).
COMMON_FIELDS = ("max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p",
                 "repeat_penalty", "seed", "stop", "think", "reasoning_budget", "deadline_ms")
CHAT_FIELDS = ("messages",) + COMMON_FIELDS
COMPLETION_FIELDS = ("prompt",) + COMMON_FIELDS


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(body: Mapping, key: str, default: float, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InvalidRequest(f"{key} must be a finite number", param=key)
    if lo is not None and (v <= lo if lo_open else v < lo):
        raise InvalidRequest(f"{key} must be {'>' if lo_open else '>='} {lo}", param=key)
    if hi is not None and v > hi:
        raise InvalidRequest(f"{key} must be <= {hi}", param=key)
    return float(v)


def _integer(body: Mapping, key: str, lo: int, hi: int | None = None) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if not _is_int(v):
        raise InvalidRequest(f"{key} must be an integer", param=key)
    if v < lo or (hi is not None and v > hi):
        raise InvalidRequest(f"{key} must be in [{lo}, {hi}]" if hi is not None else f"{key} must be >= {lo}",
                             param=key)
    return v


def _text(v: Any, param: str) -> str:
    if not isinstance(v, str):
        raise InvalidRequest(f"{param} must be a string", param=param)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"{param} is not valid UTF-8 (lone surrogate)", param=param) from None
    return v


def _content(v: Any, param: str) -> str:
    """A string, or OpenAI content parts of ``{"type": "text", "text": ...}``."""
    if isinstance(v, list):
        parts = []
        for j, part in enumerate(v):
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise InvalidRequest(f"{param}[{j}] must be a text part", param=f"{param}[{j}]")
            parts.append(_text(part.get("text"), f"{param}[{j}].text"))
        return "".join(parts)
    return _text(v, param)


def messages_from(value: Any) -> list[Message]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    out = []
    for i, m in enumerate(value):
        p = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise InvalidRequest(f"{p} must be an object", param=p)
        extra = sorted(str(k) for k in m if k not in MESSAGE_KEYS)
        if extra:
            raise InvalidRequest(f"{p} has unknown field {extra[0]!r}", param=f"{p}.{extra[0]}")
        role = m.get("role")
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise InvalidRequest(f"{p}.role must be one of {ROLES}", param=f"{p}.role")
        out.append(Message(role, _content(m.get("content"), f"{p}.content")))
    return out


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or len(stops) > MAX_STOPS:
        raise InvalidRequest(f"stop must be a string or an array of at most {MAX_STOPS} strings", param="stop")
    out = [_text(s, "stop") for s in stops]
    if any(not s for s in out):
        raise InvalidRequest("stop strings must not be empty", param="stop")
    return out


def _common(body: Mapping, allowed: tuple[str, ...], ignore: Collection[str],
            default_max_tokens: int, max_tokens_cap: int | None) -> dict:
    if not isinstance(body, Mapping):
        raise InvalidRequest("the request body must be a JSON object")
    unknown = sorted(str(k) for k in body if k not in allowed and k not in ignore)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", param=unknown[0])
    max_tokens = _integer(body, "max_tokens", 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_completion_tokens", 1)
    if max_tokens is None:
        max_tokens = default_max_tokens
    if max_tokens_cap is not None:
        max_tokens = min(max_tokens, max_tokens_cap)
    d = SamplingParams()
    top_k = _integer(body, "top_k", 0)
    sampling = SamplingParams(
        temperature=_number(body, "temperature", d.temperature, lo=0.0),
        top_p=_number(body, "top_p", d.top_p, lo=0.0, hi=1.0, lo_open=True),
        top_k=d.top_k if top_k is None else top_k,
        min_p=_number(body, "min_p", d.min_p, lo=0.0, hi=1.0),
        # bounded so the penalty can never push logits to inf/NaN
        repeat_penalty=_number(body, "repeat_penalty", d.repeat_penalty, lo=0.01, hi=100.0),
        seed=_integer(body, "seed", 0, 2**63 - 1),
    )
    think = body.get("think")
    if think is None:
        think = "auto"
    elif think not in THINK_MODES:
        raise InvalidRequest(f"think must be one of {THINK_MODES}", param="think")
    deadline_ms = body.get("deadline_ms")
    deadline_s = None
    if deadline_ms is not None:
        deadline_s = _number(body, "deadline_ms", 0.0, lo=0.0, lo_open=True) / 1000.0
    return dict(max_tokens=max_tokens, sampling=sampling, stop=_stops(body.get("stop")), think=think,
                reasoning_budget=_integer(body, "reasoning_budget", 0), deadline_s=deadline_s)


def chat_request(body: Mapping[str, Any], *, ignore: Collection[str] = (), default_max_tokens: int = 256,
                 max_tokens_cap: int | None = None) -> GenerationRequest:
    """Map a chat body (``messages`` + the common fields) to a request.

    ``ignore`` lists fields the caller handles itself (``model``, ``stream``…);
    any other unknown field is rejected. ``max_tokens`` above the cap is
    clamped to it, not rejected.
    """
    common = _common(body, CHAT_FIELDS, ignore, default_max_tokens, max_tokens_cap)
    return GenerationRequest(messages=messages_from(body.get("messages")), **common)


def completion_request(body: Mapping[str, Any], *, ignore: Collection[str] = (), default_max_tokens: int = 256,
                       max_tokens_cap: int | None = None) -> GenerationRequest:
    """Map a raw completion body (``prompt`` + the common fields) to a request."""
    common = _common(body, COMPLETION_FIELDS, ignore, default_max_tokens, max_tokens_cap)
    prompt = _text(body.get("prompt"), "prompt")
    if not prompt:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    return GenerationRequest(prompt=prompt, **common)
