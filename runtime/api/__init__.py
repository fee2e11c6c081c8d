"""The one request layer every edge maps through, in the standard library.

- ``limits``: the table of field bounds (the HTTP schema and the engine read it too);
- ``requests``: ``chat_request(body)`` / ``completion_request(body)`` -> ``GenerationRequest``;
- ``responses``: results and chunks -> OpenAI's response objects and stream events;
- ``errors``: ``error_fields(exc)`` -> ``{"code", "message"[, "param"]}``.

Edges stay transports: the HTTP server (pydantic for OpenAPI and validation
messages, then this layer), the mobile bridge (JSON strings, a pump and a poll
buffer), the CLI.
"""

from .errors import CODES, error_fields
from .limits import LIMITS, Limit
from .requests import DEFAULTS, RequestDefaults, chat_request, completion_request, messages_from
from .responses import (ChatEvents, CompletionEvents, ReasoningTally, chat_response, completion_response,
                        timings_dict, usage_dict)

__all__ = ["CODES", "error_fields", "LIMITS", "Limit", "DEFAULTS", "RequestDefaults", "chat_request",
           "completion_request", "messages_from", "ChatEvents", "CompletionEvents", "ReasoningTally",
           "chat_response", "completion_response", "timings_dict", "usage_dict"]
