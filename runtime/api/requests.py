"""Request bodies (OpenAI's chat and text completion fields, plus thinkling's
thinking controls) -> ``GenerationRequest``, in the standard library.

Every edge maps through here: the bridge with the body it parsed, the HTTP
server with the body pydantic validated (pydantic stays there for OpenAPI and
its validation messages; the bounds it checks come from ``limits``). Rules:
strict types, the table's bounds, unknown fields ignored, fields whose silent
dropping would change the answer refused. Every problem is an
``InvalidRequest`` whose ``param`` names the field (``messages[0].role``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidRequest
from ..speculative import SPECULATIVE_MODES
from ..structured import response_format_from
from ..types import THINK_MODES, GenerationRequest, Message, SamplingParams, ThinkMode
from .limits import (COMPLETION_LIMITS, DEFAULT_MAX_TOKENS, LIMITS, MAX_STOP_CHARS, MAX_STOPS, MAX_TOKENS_CAP,
                     ROLES, SAMPLING, bad)


@dataclass(frozen=True)
class RequestDefaults:
    """What a body that does not say gets; the server fills this from its settings."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    max_tokens_cap: int = MAX_TOKENS_CAP
    think: ThinkMode = "auto"
    timeout_s: float | None = None  # a cap on every request's deadline (the server's request_timeout_s)


DEFAULTS = RequestDefaults()


def _number(body: dict, name: str, table=LIMITS) -> Any:
    v = body.get(name)
    return None if v is None else table[name].check(name, v)


def _text(v: Any, param: str) -> str:
    if not isinstance(v, str):
        raise bad(param, "must be a string")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise bad(param, "must be valid Unicode (lone surrogate escape)") from None
    return v


def _bool(body: dict, name: str) -> bool | None:
    v = body.get(name)
    if v is not None and not isinstance(v, bool):
        raise bad(name, "must be a boolean")
    return v


def _content(m: dict, p: str, role: str) -> str:
    v = m.get("content")
    if v is None:
        if role != "assistant":
            raise bad(f"{p}.content", f"is required for role {role!r}")
        return ""
    if isinstance(v, list):
        parts = []
        for j, part in enumerate(v):
            pp = f"{p}.content[{j}]"
            if not isinstance(part, dict):
                raise bad(pp, "must be an object")
            if part.get("type") != "text":
                raise bad(f"{pp}.type", "only text parts are supported")
            parts.append(_text(part.get("text"), f"{pp}.text"))
        return "\n".join(parts)
    return _text(v, f"{p}.content")


def messages_from(value: Any) -> list[Message]:
    """A chat body's ``messages``; ``developer`` becomes ``system``, parts are joined by newlines."""
    if value is None:
        raise bad("messages", "missing required parameter")
    if not isinstance(value, list) or not value:
        raise bad("messages", "must be a non-empty array")
    out = []
    for i, m in enumerate(value):
        p = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad(p, "must be an object")
        role = m.get("role")
        if role not in ROLES:  # unhashable values compare unequal, never raise
            raise bad(f"{p}.role", f"must be one of {ROLES}")
        out.append(Message("system" if role == "developer" else role, _content(m, p, role)))
    return out


def _stops(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or len(value) > MAX_STOPS:
        raise bad("stop", f"must be a string or an array of at most {MAX_STOPS} strings")
    out = [_text(s, f"stop[{i}]") for i, s in enumerate(value)]
    if any(len(s) > MAX_STOP_CHARS for s in out):
        raise bad("stop", f"stop strings are at most {MAX_STOP_CHARS} characters")
    return out


def _unsupported_common(body: dict) -> None:
    """Refuse what would change the answer if ignored (both endpoints)."""
    for name in ("stream", "n"):  # defaulted, not nullable
        if name in body and body[name] is None:
            raise bad(name, "must not be null")
    _bool(body, "stream")
    so = body.get("stream_options")
    if so is not None and (not isinstance(so, dict) or not isinstance(so.get("include_usage", False), bool)):
        raise bad("stream_options", "must be an object with a boolean include_usage")
    _number(body, "n")
    lb = body.get("logit_bias")
    if lb is not None and not isinstance(lb, dict):
        raise bad("logit_bias", "must be an object")
    if lb:
        raise InvalidRequest("logit_bias is not supported", param="logit_bias")


def _unsupported_chat(body: dict) -> None:
    for name in ("tools", "functions"):
        v = body.get(name)
        if v is not None and (not isinstance(v, list) or not all(isinstance(t, dict) for t in v)):
            raise bad(name, "must be an array of objects")
        if v:
            raise InvalidRequest("tools and functions are not supported", param="tools")
    if body.get("tool_choice") not in (None, "none"):
        raise InvalidRequest("tool_choice is not supported", param="tool_choice")
    if _bool(body, "logprobs") or _number(body, "top_logprobs"):
        raise InvalidRequest("logprobs are not supported", param="logprobs")


def _unsupported_completion(body: dict) -> None:
    if _number(body, "logprobs", COMPLETION_LIMITS):
        raise InvalidRequest("logprobs are not supported", param="logprobs")
    _number(body, "best_of", COMPLETION_LIMITS)
    if body.get("echo") is None and "echo" in body:
        raise bad("echo", "must not be null")
    if _bool(body, "echo"):
        raise InvalidRequest("echo is not supported", param="echo")
    suffix = body.get("suffix")
    if suffix is not None and _text(suffix, "suffix"):
        raise InvalidRequest("suffix is not supported", param="suffix")


def _numbers(body: dict) -> dict:
    """The body's numeric fields, checked (None where absent); ``model`` checked too."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request must be a JSON object")
    model = body.get("model")
    if model is not None:
        _text(model, "model")
    return {name: _number(body, name) for name in LIMITS}


def _common(body: dict, nums: dict, defaults: RequestDefaults) -> dict:
    """The fields chat and text completions share, as ``GenerationRequest`` keywords."""
    stop = _stops(body.get("stop"))
    think = body.get("think")
    if think is not None and think not in THINK_MODES:
        raise bad("think", f"must be one of {THINK_MODES}")
    speculative = body.get("speculative")
    if speculative is not None and speculative not in SPECULATIVE_MODES:
        raise bad("speculative", f"must be one of {SPECULATIVE_MODES}")
    sampling = {k: nums[k] for k in SAMPLING if nums[k] is not None}
    if nums["seed"] is not None:
        sampling["seed"] = nums["seed"] % (1 << 64)  # OpenAI seeds are int64; numpy wants >= 0
    asked = nums["max_completion_tokens"] or nums["max_tokens"] or defaults.max_tokens
    # max(): a positive deadline_ms must stay positive after /1000 (5e-324 ms underflows)
    deadline = max(nums["deadline_ms"] / 1000, 1e-9) if nums["deadline_ms"] is not None else None
    limits = [x for x in (deadline, defaults.timeout_s) if x is not None]
    return dict(max_tokens=min(asked, defaults.max_tokens_cap), sampling=SamplingParams(**sampling), stop=stop,
                think=think or defaults.think, reasoning_budget=nums["reasoning_budget"],
                deadline_s=min(limits) if limits else None, speculative=speculative)


def chat_request(body: dict, defaults: RequestDefaults = DEFAULTS) -> GenerationRequest:
    """Map a chat body (``/v1/chat/completions``' fields) to a runtime request.

    ``model`` is the caller's to check against what it serves; unknown fields are ignored.
    """
    nums = _numbers(body)
    messages = messages_from(body.get("messages"))
    common = _common(body, nums, defaults)
    _unsupported_common(body)
    _unsupported_chat(body)
    return GenerationRequest(messages=messages, response_format=response_format_from(body.get("response_format")),
                             **common)


def completion_request(body: dict, defaults: RequestDefaults = DEFAULTS) -> GenerationRequest:
    """Map a text completion body (``/v1/completions``' fields) to a runtime request."""
    common = _common(body, _numbers(body), defaults)
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("prompt", "missing required parameter")
    if isinstance(prompt, list):
        if len(prompt) != 1:
            raise bad("prompt", "must be a string or an array holding exactly one string")
        prompt = _text(prompt[0], "prompt[0]")
    else:
        prompt = _text(prompt, "prompt")
    _unsupported_common(body)
    _unsupported_completion(body)
    if not prompt:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    return GenerationRequest(prompt=prompt, **common)
