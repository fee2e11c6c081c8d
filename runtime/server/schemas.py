"""HTTP request schemas (OpenAI's, plus thinkling's thinking controls).

Extra-field policy: unknown fields are **ignored** (``extra="ignore"``), at the
top level and inside messages. OpenAI SDKs and frameworks send fields that the
OpenAI API knows and we do not use (``user``, ``store``, ``metadata``,
``parallel_tool_calls``, ``service_tier`` ...); rejecting them would break
clients that "speak OpenAI". Fields whose silent dropping would change the
answer (``n > 1``, ``tools``, ``response_format`` types other than text/json,
``logit_bias``, ``logprobs``, ``echo``, ``suffix``, ``best_of > 1``) are declared
and refused with a 400 instead (see ``translate.unsupported``).

Known fields are strict: ``"max_tokens": "5"`` is a type error, not a 5; floats
must be finite; strings must be valid Unicode (no lone surrogates, which JSON
escapes allow but UTF-8 cannot encode).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Discriminator, Field, Tag

from ..types import THINK_MODES

ThinkMode = Literal["auto", "on", "off", "post"]
assert tuple(ThinkMode.__args__) == THINK_MODES  # the runtime's list is the source of truth

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


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)


class TextPart(_Lenient):
    """One part of a multi-part message; only text parts are supported."""

    type: Literal["text"]
    text: Text


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"] = Field(
        description="'developer' is treated as 'system'; tool/function roles are not supported")
    content: _str_or_list(TextPart) = Field(  # type: ignore[valid-type]
        None, description="text, or a list of text parts (joined); null only for assistant messages")


class StreamOptions(_Lenient):
    include_usage: bool = False


Stop = Annotated[Text, Field(max_length=256)]


class _GenerationFields(_Lenient):
    """Fields shared by chat and text completions."""

    model: Text | None = Field(None, description="must name the served model (404 otherwise); absent: served model")
    max_tokens: int | None = Field(None, ge=1, description="new tokens; clamped to the server's cap")
    temperature: float | None = Field(None, ge=0, le=100, description="0 is greedy; default 0.8")
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1 << 20, description="thinkling/llama.cpp extension")
    min_p: float | None = Field(None, ge=0, le=1, description="thinkling/llama.cpp extension")
    repeat_penalty: float | None = Field(None, ge=0.01, le=100, description="thinkling/llama.cpp extension")
    frequency_penalty: float | None = Field(
        None, ge=-2, le=2, description="subtracted from a token's logit once per time it was generated so far")
    presence_penalty: float | None = Field(
        None, ge=-2, le=2, description="subtracted from the logit of every token generated so far")
    seed: int | None = Field(None, ge=-(1 << 63), le=(1 << 64) - 1)
    stop: _str_or_list(Stop, max_items=8) = Field(None, description="up to 8 stop strings")  # type: ignore[valid-type]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only 1 is supported")
    logit_bias: dict[str, float] | None = Field(None, description="not supported: must be empty")
    # thinkling's thinking controls
    think: ThinkMode | None = Field(None, description="reasoning mode; absent: the server's default_think")
    reasoning_budget: int | None = Field(None, ge=0, le=1 << 31, description="cap on reasoning tokens")
    deadline_ms: float | None = Field(None, gt=0, le=86_400_000.0,
                                      description="wall-clock budget from arrival, queue included")
    speculative: Literal["off", "ngram"] | None = Field(
        None, description="prompt-lookup speculative decoding (greedy only; output unchanged); "
                          "absent: the server's --speculative")


class ChatCompletionRequest(_GenerationFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="newer name of max_tokens; wins if both")
    logprobs: bool | None = Field(None, description="not supported: must be false")
    top_logprobs: int | None = Field(None, ge=0, le=20, description="not supported: must be 0")
    tools: list[dict[str, Any]] | None = Field(None, description="not supported: must be empty")
    functions: list[dict[str, Any]] | None = Field(None, description="not supported: must be empty")
    tool_choice: Any | None = Field(None, description="only 'none' or absent")
    response_format: dict[str, Any] | None = Field(
        None, description="{'type': 'text'}, {'type': 'json_object'} or {'type': 'json_schema', 'json_schema': "
                          "{'name': ..., 'schema': {...}}}; applied to the answer, not to the reasoning")


class CompletionRequest(_GenerationFields):
    prompt: _str_or_list(Text, nullable=False, min_items=1, max_items=1) = Field(  # type: ignore[valid-type]
        description="a string, or a list holding exactly one string")
    logprobs: int | None = Field(None, ge=0, le=5, description="not supported: must be absent or 0")
    echo: bool = Field(False, description="not supported: must be false")
    suffix: Text | None = Field(None, description="not supported: must be empty")
    best_of: int | None = Field(None, ge=1, le=1, description="only 1 is supported")


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, OpenAI's shape."""

    error: ErrorBody
