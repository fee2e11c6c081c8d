"""Ollama's request bodies (``/api/chat``, ``/api/generate``) -> ``GenerationRequest``.

One mapping per route, and both go through the one request layer
(``runtime.api``): the Ollama body is rewritten field by field into the
OpenAI-shaped body that ``chat_request`` / ``completion_request`` read, so the
bounds, the refusals and the typed errors are the OpenAI routes' own. A
field error is renamed back to the Ollama field it came from
(``max_tokens`` -> ``options.num_predict``).

Ollama's rules kept here: ``stream`` defaults to true; ``think`` is a boolean
(thinkling also takes ``"auto"``, ``"post"``, ``"on"``, ``"off"``, and its
``reasoning_budget`` and ``deadline_ms`` fields); unknown
``options`` are ignored with a warning, as Ollama does. Options that only
matter when Ollama (re)loads a model are accepted and ignored (this server has
one model, loaded once); sampling options the runtime lacks are accepted at
their neutral value and refused otherwise (ignoring them would change the answer).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from ..api import RequestDefaults, chat_request, completion_request
from ..errors import InvalidRequest
from ..types import GenerationRequest

log = logging.getLogger(__name__)

# Ollama option -> the OpenAI-body field runtime.api checks and maps.
OPTION_FIELDS = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                 "seed": "seed", "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
                 "frequency_penalty": "frequency_penalty", "stop": "stop"}
# Options Ollama applies when it loads a model or that steer hardware: one model, loaded
# once at startup, serves every request here, so they are accepted and have no effect.
LOAD_OPTIONS = frozenset({"num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "use_mlock", "num_thread",
                          "numa", "low_vram", "f16_kv", "vocab_only", "logits_all", "embedding_only", "num_keep",
                          "penalize_newline", "mirostat_tau", "mirostat_eta"})
# Sampling options the runtime does not have: fine at the value that switches them off
# (clients often send a full option set), refused otherwise.
NEUTRAL_OPTIONS = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0}
# thinkling's names for Ollama's think values (strings are thinkling's extension)
THINK = {True: "on", False: "off", "auto": "auto", "post": "post", "on": "on", "off": "off"}
OLLAMA_LEVELS = ("high", "medium", "low")  # gpt-oss's levels: no thinkling model has them
_DURATION = re.compile(r"-?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+")


@dataclass(frozen=True)
class OllamaRequest:
    """What a route needs besides the runtime request."""

    model: str  # as the client wrote it (echoed back); ``served_name`` drops Ollama's ":latest"
    stream: bool
    request: GenerationRequest | None  # None: no prompt, Ollama's "load the model" call
    wants_thinking: bool = False  # the client sent think: true (Ollama refuses it for a model that cannot think)

    @property
    def served_name(self) -> str:
        return served_name(self.model)


def parse_body(raw: bytes) -> dict:
    """The request body as a JSON object; ``InvalidRequest`` for anything else
    (NaN and Infinity too, which Python's parser would otherwise accept)."""
    if not raw.strip():
        raise InvalidRequest("missing request body")

    def no_constants(name: str):
        raise ValueError(f"{name} is not valid JSON")

    try:
        body = json.loads(raw, parse_constant=no_constants)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError; so are 5000-digit ints
        raise InvalidRequest(f"invalid JSON body: {e}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


def model_name(body: dict) -> str:
    """``model`` (or Ollama's older ``name``), as given."""
    name = body.get("model", body.get("name"))
    if name is None or name == "":
        raise InvalidRequest("model is required", param="model")
    if not isinstance(name, str):
        raise InvalidRequest("model must be a string", param="model")
    return name


def served_name(model: str) -> str:
    """The registered name for an Ollama model name: Ollama's default tag ``:latest`` is dropped."""
    return model.removesuffix(":latest")


def _absent_or_empty(body: dict, name: str, why: str, where: str = "") -> None:
    if body.get(name) not in (None, "", [], {}):
        raise InvalidRequest(f"{where}{name} is not supported: {why}", param=f"{where}{name}")


def _options(options: Any, out: dict) -> None:
    """``options`` into the OpenAI-shaped body ``out`` (num_predict as max_tokens)."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise InvalidRequest("options must be an object", param="options")
    for key, value in options.items():
        if key in OPTION_FIELDS:
            out[OPTION_FIELDS[key]] = value
        elif key == "num_predict":
            if isinstance(value, bool) or not isinstance(value, int) or value == 0 or value < -2:
                raise InvalidRequest("options.num_predict: must be a positive integer, -1 (no limit) or -2 "
                                     "(fill the context)", param="options.num_predict")
            out["max_tokens"] = value if value > 0 else 1 << 62  # clamped to the server's cap
        elif key == "repeat_last_n":
            if isinstance(value, bool) or not isinstance(value, int) or value < -1:
                raise InvalidRequest("options.repeat_last_n: must be an integer >= -1", param="options.repeat_last_n")
        elif key in NEUTRAL_OPTIONS:
            if value is not None and value != NEUTRAL_OPTIONS[key]:
                raise InvalidRequest(f"options.{key} is not supported (only {NEUTRAL_OPTIONS[key]}, which turns it "
                                     f"off)", param=f"options.{key}")
        elif key not in LOAD_OPTIONS:
            log.warning("ignoring unknown Ollama option %r", key)  # Ollama's own rule


def _repeat_last_n(req: GenerationRequest, options: Any) -> GenerationRequest:
    """Ollama's ``repeat_last_n`` (0: off, -1: the whole context); not an OpenAI field."""
    n = (options or {}).get("repeat_last_n")
    if n is None:
        return req
    if n == 0:
        return replace(req, sampling=replace(req.sampling, repeat_penalty=1.0))
    return replace(req, sampling=replace(req.sampling, repeat_last_n=n if n > 0 else 1 << 30))


def _think(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bool, str)) and value in THINK:
        return THINK[value]
    if value in OLLAMA_LEVELS:
        raise InvalidRequest(f'think value "{value}" is not supported for this model', param="think")
    raise InvalidRequest('think must be true, false, "auto" or "post"', param="think")


def _format(value: Any) -> dict | None:
    """Ollama's ``format`` as OpenAI's ``response_format`` (the same answer-only grammar)."""
    if value is None or value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": value}}
    raise InvalidRequest('format must be "json" or a JSON schema object', param="format")


def _keep_alive(value: Any) -> None:
    """Checked like Ollama checks it (a number of seconds or a Go duration such as
    "5m"); it has nothing to act on: the one model stays loaded while the server runs."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return
    if not isinstance(value, str) or not (_DURATION.fullmatch(value) or re.fullmatch(r"-?\d+(\.\d*)?", value)):
        raise InvalidRequest(f"keep_alive: invalid duration {value!r}", param="keep_alive")


def _stream(body: dict) -> bool:
    stream = body.get("stream", True)
    if stream is None:
        return True
    if not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", param="stream")
    return stream


def _ollama_param(param: str | None) -> str | None:
    """The Ollama field an OpenAI-body field came from."""
    if param is None:
        return None
    if param == "max_tokens":
        return "options.num_predict"
    if param.startswith("response_format"):
        return "format"
    head = re.split(r"[.\[]", param, maxsplit=1)[0]
    return f"options.{param}" if head in OPTION_FIELDS.values() else param


def _through_api(mapper, body: dict, defaults: RequestDefaults) -> GenerationRequest:
    try:
        return mapper(body, defaults)
    except InvalidRequest as e:
        new = _ollama_param(e.param)
        message = new + e.message[len(e.param):] if e.param and new and e.message.startswith(e.param) else e.message
        raise InvalidRequest(message, param=new) from None


def _shared(body: dict) -> dict:
    """The fields both routes have, as OpenAI-body fields (and the checks of the rest)."""
    _keep_alive(body.get("keep_alive"))
    _absent_or_empty(body, "images", "this server has no image input")
    out: dict = {"think": _think(body.get("think")), "response_format": _format(body.get("format")),
                 # thinkling's extensions, as on the OpenAI routes
                 "reasoning_budget": body.get("reasoning_budget"), "deadline_ms": body.get("deadline_ms")}
    _options(body.get("options"), out)
    return out


def chat_from_ollama(body: dict, defaults: RequestDefaults) -> OllamaRequest:
    """An ``/api/chat`` body -> the runtime request (None for an empty ``messages``:
    Ollama answers that with a "load" reply)."""
    name, stream = model_name(body), _stream(body)
    messages = body.get("messages")
    _absent_or_empty(body, "tools", "tool calling is not available")
    if messages is None or messages == []:
        _shared(body)
        return OllamaRequest(name, stream, None)
    if not isinstance(messages, list):
        raise InvalidRequest("messages must be an array", param="messages")
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            _absent_or_empty(m, "images", "this server has no image input", f"messages[{i}].")
            _absent_or_empty(m, "tool_calls", "tool calling is not available", f"messages[{i}].")
    # the previous turns' "thinking" is not fed back (thinkling's templates drop it)
    turns = [{"role": m.get("role"), "content": "" if m.get("content") is None else m["content"]}
             if isinstance(m, dict) else m for m in messages]  # Ollama allows a message without content
    openai = {"messages": turns, **_shared(body)}
    req = _through_api(chat_request, openai, defaults)
    return OllamaRequest(name, stream, _repeat_last_n(req, body.get("options")), _think(body.get("think")) == "on")


def generate_from_ollama(body: dict, defaults: RequestDefaults) -> OllamaRequest:
    """An ``/api/generate`` body -> the runtime request. ``prompt`` (with ``system``)
    goes through the chat template as a user turn; ``raw: true`` sends it as is."""
    name, stream = model_name(body), _stream(body)
    for field, why in (("suffix", "fill-in-the-middle is not available"),
                       ("template", "the model's own chat template is always used"),
                       ("context", "send the conversation to /api/chat instead")):
        _absent_or_empty(body, field, why)
    raw = False if body.get("raw") is None else body["raw"]
    if not isinstance(raw, bool):
        raise InvalidRequest("raw must be a boolean", param="raw")
    prompt, system = body.get("prompt"), body.get("system")
    if prompt is None or prompt == "":
        _shared(body)
        return OllamaRequest(name, stream, None)
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    if system is not None and not isinstance(system, str):
        raise InvalidRequest("system must be a string", param="system")
    openai = _shared(body)
    if raw:
        if openai["response_format"] is not None:  # the grammar applies to a chat answer
            raise InvalidRequest("format is not supported with raw: true", param="format")
        req = _through_api(completion_request, {"prompt": prompt, **openai}, defaults)
    else:
        turns = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        req = _through_api(chat_request, {"messages": turns, **openai}, defaults)
    return OllamaRequest(name, stream, _repeat_last_n(req, body.get("options")), openai["think"] == "on")
