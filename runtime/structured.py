"""Structured output: a response format (JSON, or JSON matching a schema) -> a GBNF grammar.

The grammar itself comes from llama.cpp: llama-cpp-python ships llama.cpp's
JSON-Schema-to-GBNF converter and its generic JSON grammar, and the backend
runs llama.cpp's grammar sampler over them (``LlamaCppBackend.constraint``).
What is hand-written here is only the gate in front of the converter: that
converter skips keywords it cannot enforce (``minimum``, ``not``,
``uniqueItems``…) without a word, which would hand back an answer the schema
rejects. So a schema is first checked against the JSON Schema meta-schema
(the ``jsonschema`` library) and then walked once; any keyword the grammar
would not enforce is refused with its JSON path, before any token is spent.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from .errors import InvalidRequest
from .types import ResponseFormat

FORMAT_TYPES = ("text", "json_object", "json_schema")

# Keywords the converter turns into grammar rules.
_ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "pattern",
    "format", "minLength", "maxLength",
}
# Keywords that constrain nothing (annotations and containers of definitions).
_ANNOTATIONS = {
    "$schema", "$id", "$comment", "$defs", "definitions", "title", "description", "default",
    "examples", "deprecated", "readOnly", "writeOnly", "$anchor",
}
_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _path(parts: tuple) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _unsupported(where: tuple, why: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{_path(where)}: {why}", param=param)


def _walk(schema: Any, where: tuple, param: str) -> None:
    if isinstance(schema, bool):
        if schema is False and where:
            raise _unsupported(where, "a `false` subschema cannot be turned into a grammar", param)
        return
    if not isinstance(schema, dict):
        raise _unsupported(where, "a schema must be an object", param)
    for key, value in schema.items():
        here = where + (key,)
        if key in _ANNOTATIONS and key not in _SUBSCHEMA_MAPS:
            continue
        if key not in _ENFORCED and key not in _SUBSCHEMA_MAPS:
            raise _unsupported(here, f"the keyword {key!r} is not supported: llama.cpp's grammar "
                                     "cannot enforce it, and an unenforced schema could be violated", param)
        if key == "$ref" and not str(value).startswith("#/"):
            raise _unsupported(here, "only local references ('#/...') are supported", param)
        if key == "format" and value not in _FORMATS:
            raise _unsupported(here, f"format {value!r} is not supported (supported: "
                                     f"{', '.join(sorted(_FORMATS))})", param)
        if key == "pattern" and not (value.startswith("^") and value.endswith("$")):
            raise _unsupported(here, "a pattern must be anchored, starting with '^' and ending with '$'", param)
        if key in ("minLength", "maxLength") and schema.get("type") != "string":
            raise _unsupported(here, f"{key} is enforced only beside \"type\": \"string\"", param)
        if key == "allOf" and schema.get("type", "object") != "object":
            raise _unsupported(here, "allOf is supported for objects only", param)
        if key in _SUBSCHEMA_MAPS:
            for name, sub in value.items():
                _walk(sub, here + (name,), param)
        elif key in _SUBSCHEMA_LISTS:
            for i, sub in enumerate(value):
                _walk(sub, here + (i,), param)
        elif key == "items":
            if isinstance(value, list):
                for i, sub in enumerate(value):
                    _walk(sub, here + (i,), param)
            else:
                _walk(value, here, param)
        elif key == "additionalProperties" and isinstance(value, dict):
            _walk(value, here, param)


def check_schema(schema: Any, param: str = "response_format.json_schema.schema") -> None:
    """Raise ``InvalidRequest`` (with the offending keyword's JSON path) unless ``schema``
    is a valid JSON Schema whose every constraint the grammar enforces."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequest("the schema must be a JSON object", param=param)
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(schema)
        _walk(schema, (), param)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{_path(tuple(exc.absolute_path))}: invalid JSON Schema: {exc.message}",
                             param=param) from None
    except RecursionError:
        raise InvalidRequest("the schema is nested too deeply", param=param) from None


@lru_cache(maxsize=64)
def _grammar_for_schema(schema_json: str, param: str) -> str:
    """Check and convert one schema (its JSON text is the key: the edge, the engine and the
    controller each ask for the same request's grammar, and only the first pays)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    check_schema(json.loads(schema_json), param)
    try:
        return json_schema_to_gbnf(schema_json)
    except Exception as exc:  # noqa: BLE001 - the converter's refusals are asserts, ValueErrors, regex errors...
        raise InvalidRequest(f"the schema cannot be turned into a grammar: {exc}", param=param) from None


def grammar_for(fmt: ResponseFormat, param: str = "response_format") -> str | None:
    """The GBNF grammar for ``fmt`` (None for free text); the schema is checked first."""
    if fmt.type == "text":
        return None
    if fmt.type == "json_object":
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF  # its root rule is an object, as OpenAI's json_object asks
    if fmt.type != "json_schema":
        raise InvalidRequest(f"response_format type must be one of {', '.join(FORMAT_TYPES)}", param=param)
    if fmt.schema is None:
        raise InvalidRequest("json_schema needs a schema", param=f"{param}.json_schema.schema")
    where = f"{param}.json_schema.schema"
    try:
        text = json.dumps(fmt.schema)
    except RecursionError:
        raise InvalidRequest("the schema is nested too deeply", param=where) from None
    except (TypeError, ValueError) as exc:  # a library caller's dict that is not JSON
        raise InvalidRequest(f"the schema is not JSON: {exc}", param=where) from None
    return _grammar_for_schema(text, where)


def response_format_from(obj: Any, param: str = "response_format") -> ResponseFormat | None:
    """OpenAI's ``response_format`` object -> ``ResponseFormat`` (None when absent or text).

    ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name": ..,
    "schema": {..}, "strict": ..}}``; the schema is checked here, so a bad one is refused
    before the request is queued.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidRequest("response_format must be an object", param=param)
    kind = obj.get("type", "text")
    if kind not in FORMAT_TYPES:
        raise InvalidRequest(f"response_format.type must be one of {', '.join(FORMAT_TYPES)}",
                             param=f"{param}.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat("json_object")
    spec = obj.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidRequest("response_format.json_schema must be an object with a schema",
                             param=f"{param}.json_schema")
    name = spec.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest("json_schema.name must be a string", param=f"{param}.json_schema.name")
    if not isinstance(spec.get("strict", True), bool):
        raise InvalidRequest("json_schema.strict must be a boolean", param=f"{param}.json_schema.strict")
    fmt = ResponseFormat("json_schema", spec.get("schema"), name)
    grammar_for(fmt, param)
    return fmt
