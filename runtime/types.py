"""Plain request/response records shared by every layer.

Edges (HTTP, CLI, bridge) map their own schemas onto these dataclasses in one
function each; nothing below the edges sees a transport type.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]
ThinkMode = Literal["auto", "on", "off", "post"]
THINK_MODES: tuple[str, ...] = ("auto", "on", "off", "post")
FinishReason = Literal["stop", "length", "cancelled", "deadline"]


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. ``temperature == 0`` is pure greedy: the filters and
    the seed are ignored, and no penalty applies unless one is set.

    ``frequency_penalty`` and ``presence_penalty`` are OpenAI's (-2..2): each
    generated occurrence of a token lowers its logit by ``frequency_penalty``,
    and a token generated at least once loses ``presence_penalty`` more. Only
    tokens generated in this generation count, not the prompt's.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass(frozen=True)
class ResponseFormat:
    """What the answer must be: ``text`` (free), ``json_object`` (any JSON object) or
    ``json_schema`` (JSON valid against ``schema``; ``name`` is its label). Applied to
    the answer only: a reasoning block stays free text (``runtime.structured``)."""

    type: str = "text"
    schema: dict | None = None
    name: str | None = None

    @property
    def constrained(self) -> bool:
        return self.type != "text"


@dataclass
class GenerationRequest:
    """One generation. Exactly one of ``prompt`` (raw completion) or
    ``messages`` (chat) is set.

    ``think`` and ``reasoning_budget`` are read by the thinking controller;
    ``deadline_s`` is a wall-clock budget measured from submission.
    """

    prompt: str | None = None
    messages: list[Message] | None = None
    max_tokens: int = 256
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    think: ThinkMode = "auto"
    reasoning_budget: int | None = None
    deadline_s: float | None = None
    logprobs: bool = False
    # "ngram": prompt-lookup speculative decoding (greedy only); "off"; None: the engine's default
    speculative: str | None = None
    response_format: ResponseFormat | None = None  # None: free text
    # Set by the engine on submission; used for TTFT and deadlines.
    submitted_at: float = field(default_factory=time.perf_counter)


@dataclass
class Timings:
    """Per-response timings; all durations in milliseconds."""

    load_ms: float = 0.0
    queue_ms: float = 0.0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_ms: float = 0.0
    ttft_ms: float = 0.0
    completion_tokens: int = 0
    decode_ms: float = 0.0
    decode_tok_s: float = 0.0
    total_ms: float = 0.0
    drafted_tokens: int = 0  # speculative decoding: tokens guessed by the drafter
    accepted_tokens: int = 0  # ... and kept (each is what plain decoding produced)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Chunk:
    """One streamed piece. ``text`` is the answer delta, ``reasoning`` the
    reasoning delta (either may be empty). The last chunk carries
    ``finish_reason`` and ``timings``."""

    text: str = ""
    reasoning: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    timings: Timings | None = None
    decision: dict | None = None


@dataclass
class GenerationResult:
    """A whole response: the non-streaming call joins the stream into this."""

    text: str
    reasoning: str
    tokens: list[int]
    finish_reason: FinishReason
    timings: Timings
    model: str
    logprobs: list[float] = field(default_factory=list)
    decision: dict | None = None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "text": self.text,
            "reasoning": self.reasoning,
            "tokens": list(self.tokens),
            "finish_reason": self.finish_reason,
            "timings": self.timings.to_dict(),
            "decision": self.decision,
        }
