"""HTTP request schemas (OpenAI's, plus thinkling's thinking controls).

Extra-field policy: unknown fields are **ignored** (``extra="ignore"``), at the
top level and inside messages. OpenAI SDKs and frameworks send fields that the
OpenAI API knows and we do not use (``user``, ``store``, ``metadata``,
``parallel_tool_calls``, ``service_tier`` ...); rejecting them would break
clients that "speak OpenAI". Fields whose silent dropping would change the
answer (``n > 1``, ``tools``, ``response_format`` types other than text/json,
``logit_bias``, ``logprobs``, ``echo``, ``suffix``, ``best_of > 1``) are declared
and refused with a 400 instead (by ``runtime.api.requests``, which every edge maps through).

Known fields are strict: ``"max_tokens": "5"`` is a type error, not a 5; floats
must be finite; strings must be valid Unicode (no lone surrogates, which JSON
escapes allow but UTF-8 cannot encode).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from ..api.limits import COMPLETION_LIMITS, LIMITS, MAX_STOP_CHARS, MAX_STOPS, ROLES, Limit
from ..speculative import SPECULATIVE_MODES
from ..types import ThinkMode

# Branch names of the tagged unions below; dropped when an error names its field.
UNION_TAGS = frozenset({"str", "list", "null"})


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (lone surrogate escape)") from None
    return value


Text = Annotated[str, AfterValidator(_valid_unicode)]


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "null" if value is None else "str"


def _str_or_list(item: Any, nullable: bool = True, min_items: int = 0, max_items: int | None = None) -> Any:
    """``str | list[item] | None`` as a tagged union, so a wrong value gets one
    error for the branch it looks like, not one per branch."""
    items = Field(min_length=min_items, max_length=max_items)
    branches = [Annotated[Text, Tag("str")], Annotated[list[item], items, Tag("list")]]
    if nullable:
        branches.append(Annotated[None, Tag("null")])
    return Annotated[Union[tuple(branches)], Discriminator(_kind)]


def _bounds(name: str, table: dict[str, Limit] = LIMITS) -> dict:
    """pydantic's bound keywords for a row of the runtime's limits table (one source for both)."""
    lim = table[name]
    out: dict = {}
    if lim.low is not None:
        out["gt" if lim.low_open else "ge"] = lim.low
    if lim.high is not None:
        out["le"] = lim.high
    return out


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class TextPart(_Lenient):
    """One part of a multi-part message; only text parts are supported."""

    type: Literal["text"]
    text: Text


class ChatMessage(_Lenient):
    role: Literal[ROLES] = Field(  # type: ignore[valid-type]
        description="'developer' is treated as 'system'; tool/function roles are not supported")
    content: _str_or_list(TextPart) = Field(  # type: ignore[valid-type]
        None, description="text, or a list of text parts (joined); null only for assistant messages")


class StreamOptions(_Lenient):
    include_usage: bool = False


Stop = Annotated[Text, Field(max_length=MAX_STOP_CHARS)]


class _GenerationFields(_Lenient):
    """Fields shared by chat and text completions."""

    model: Text | None = Field(None, description="must name the served model (404 otherwise); absent: served model")
    max_tokens: int | None = Field(None, **_bounds("max_tokens"), description="new tokens; clamped to the server's cap")
    temperature: float | None = Field(None, **_bounds("temperature"), description="0 is greedy; default 0.8")
    top_p: float | None = Field(None, **_bounds("top_p"))
    top_k: int | None = Field(None, **_bounds("top_k"), description="thinkling/llama.cpp extension")
    min_p: float | None = Field(None, **_bounds("min_p"), description="thinkling/llama.cpp extension")
    repeat_penalty: float | None = Field(None, **_bounds("repeat_penalty"), description="thinkling/llama.cpp extension")
    frequency_penalty: float | None = Field(
        None, **_bounds("frequency_penalty"),
        description="subtracted from a token's logit once per time it was generated so far")
    presence_penalty: float | None = Field(
        None, **_bounds("presence_penalty"), description="subtracted from the logit of every token generated so far")
    seed: int | None = Field(None, **_bounds("seed"))
    stop: _str_or_list(Stop, max_items=MAX_STOPS) = Field(  # type: ignore[valid-type]
        None, description=f"up to {MAX_STOPS} stop strings")
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, **_bounds("n"), description="only 1 is supported")
    logit_bias: dict[str, float] | None = Field(None, description="not supported: must be empty")
    # thinkling's thinking controls
    think: ThinkMode | None = Field(None, description="reasoning mode; absent: the server's default_think")
    reasoning_budget: int | None = Field(None, **_bounds("reasoning_budget"), description="cap on reasoning tokens")
    deadline_ms: float | None = Field(None, **_bounds("deadline_ms"),
                                      description="wall-clock budget from arrival, queue included")
    speculative: Literal[SPECULATIVE_MODES] | None = Field(  # type: ignore[valid-type]
        None, description="prompt-lookup speculative decoding (greedy only; output unchanged); "
                          "absent: the server's --speculative")


class ChatCompletionRequest(_GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, **_bounds("max_completion_tokens"),
                                              description="newer name of max_tokens; wins if both")
    logprobs: bool | None = Field(None, description="not supported: must be false")
    top_logprobs: int | None = Field(None, **_bounds("top_logprobs"), description="not supported: must be 0")
    tools: list[dict[str, Any]] | None = Field(None, description="not supported: must be empty")
    functions: list[dict[str, Any]] | None = Field(None, description="not supported: must be empty")
    tool_choice: Any | None = Field(None, description="only 'none' or absent")
    response_format: dict[str, Any] | None = Field(
        None, description="{'type': 'text'}, {'type': 'json_object'} or {'type': 'json_schema', 'json_schema': "
                          "{'name': ..., 'schema': {...}}}; applied to the answer, not to the reasoning")


class CompletionRequest(_GenerationFields):
    prompt: _str_or_list(Text, nullable=False, min_items=1, max_items=1) = Field(  # type: ignore[valid-type]
        description="a string, or a list holding exactly one string")
    logprobs: int | None = Field(None, **_bounds("logprobs", COMPLETION_LIMITS),
                                 description="not supported: must be absent or 0")
    echo: bool = Field(False, description="not supported: must be false")
    suffix: Text | None = Field(None, description="not supported: must be empty")
    best_of: int | None = Field(None, **_bounds("best_of", COMPLETION_LIMITS), description="only 1 is supported")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, OpenAI's shape."""

    error: ErrorBody
