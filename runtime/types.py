"""Plain request/response records shared by every layer.

Edges (HTTP, CLI, bridge) map their own schemas onto these dataclasses in one
function each; nothing below the edges sees a transport type.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

Role = Literal["system", "user", "assistant"]
ThinkMode = Literal["auto", "on", "off", "post"]  # what a request asks for (the decision's mode is decided)
THINK_MODES: tuple[str, ...] = get_args(ThinkMode)
FinishReason = Literal["stop", "length", "cancelled", "deadline"]
DEFAULT_MAX_TOKENS = 256  # new tokens when a request does not say (every edge's default)


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
    max_tokens: int = DEFAULT_MAX_TOKENS
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: list[str] = field(default_factory=list)
    think: ThinkMode = "auto"
    reasoning_budget: int | None = None
    deadline_s: float | None = None
    logprobs: bool = False
    # "ngram": prompt-lookup speculative decoding (greedy only); "off"; None: the engine's default
    speculative: str | None = None
    response_format: ResponseFormat | None = None  # None: free text
    # In-process callers only (``thinkling calibrate``): the first chunk carries the final
    # hidden state of the last prompt token (``Chunk.hidden``). No edge sets it.
    hidden_state: bool = False
    # Set by the engine on its copy of the request at submission; used for TTFT and deadlines.
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


# --- the thinking controller's decision ---------------------------------------
# Built by runtime.thinking (``dataclasses.replace`` as the plan takes shape) and
# carried on the last chunk. It is public API: HTTP and bridge responses ship
# ``to_dict()`` and ``bench`` reads it, so the JSON shape (keys, their order,
# which keys appear) is fixed here, in one place.

# What the controller decided: the three reasoning modes, or a raw completion prompt.
Mode = Literal["off", "on", "post", "raw"]
MODES: tuple[str, ...] = get_args(Mode)
Stage = Literal["gate", "probe"]  # which stage of ``auto``'s cascade decided


@dataclass(frozen=True)
class Decision:
    """One request's thinking decision.

    ``stage`` is set when ``auto`` decided by its profile (``gate``: the question
    alone; ``probe``: a short direct answer). ``planned`` is False when the probe's
    own answer is returned (no generation was planned, so no ``budget``).
    """

    mode: Mode
    requested: ThinkMode | str
    reason: str
    family: str | None = None
    stage: Stage | None = None
    gate_score: float | None = None
    skip_below: float | None = None
    score: float | None = None
    threshold: float | None = None
    probe_ms: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    # the signals the deciding stage scored ("text", "hidden", "probe", joined by "+") and
    # what reading them cost this request, in ms (0 for the question text alone)
    signal: str | None = None
    cost_ms: float | None = None
    deadline: str | None = None  # why a deadline could only be a hard stop
    deadline_budget: int | None = None  # reasoning tokens the deadline leaves
    planned: bool = False
    budget: int | None = None
    response_format: str | None = None
    constrained: str | None = None

    @property
    def thought(self) -> bool:
        """The generation reasoned (or was meant to): ``on`` or ``post``."""
        return self.mode in ("on", "post")

    def to_dict(self) -> dict:
        """The wire shape (byte-compatible with the dicts this record replaced)."""
        if self.mode == "raw":
            return {"mode": self.mode, "requested": self.requested, "reason": self.reason}
        d: dict = {"requested": self.requested, "family": self.family}
        if self.gate_score is not None:
            d.update(gate_score=self.gate_score, skip_below=self.skip_below)
        if self.stage == "gate":
            d.update(stage=self.stage, signal=self.signal, cost_ms=self.cost_ms, mode=self.mode, score=self.score,
                     threshold=self.threshold, features=dict(self.features), reason=self.reason)
        elif self.stage == "probe":
            d.update(stage=self.stage, signal=self.signal, cost_ms=self.cost_ms, score=self.score,
                     threshold=self.threshold, probe_ms=self.probe_ms, features=dict(self.features),
                     mode=self.mode, reason=self.reason)
        else:
            d.update(mode=self.mode, reason=self.reason)
        if self.deadline is not None:
            d["deadline"] = self.deadline
        if self.deadline_budget is not None:
            d["deadline_budget"] = self.deadline_budget
        if self.planned:
            d["budget"] = self.budget
        if self.response_format is not None:
            d.update(response_format=self.response_format, constrained=self.constrained)
        return d


    @classmethod
    def from_dict(cls, d: dict) -> "Decision":
        """Read the wire shape back (a client of the HTTP server); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw.setdefault("requested", "")
        kw.setdefault("reason", "")
        kw["planned"] = "budget" in d
        return cls(**{"mode": d.get("mode", "off"), **kw})


def decision_dict(decision: Decision | None) -> dict | None:
    """``to_dict()``, or None: what an edge puts on the wire."""
    return decision.to_dict() if decision is not None else None


@dataclass
class Chunk:
    """One streamed piece. ``text`` is the answer delta, ``reasoning`` the
    reasoning delta (either may be empty). The last chunk carries
    ``finish_reason`` and ``timings``.

    One writer each: ``runtime.generate`` creates it; the thinking controller adds
    ``decision`` and the engine its queue/load timings on a copy (``dataclasses.replace``)."""

    text: str = ""
    reasoning: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    timings: Timings | None = None
    decision: Decision | None = None
    # the final hidden state of the last prompt token, on the first chunk of a plan that
    # asked for it (runtime.generate.GenerationPlan.read_hidden); never sent over the wire
    hidden: Any = None


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
    decision: Decision | None = None

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "text": self.text,
            "reasoning": self.reasoning,
            "tokens": list(self.tokens),
            "finish_reason": self.finish_reason,
            "timings": self.timings.to_dict(),
            "decision": decision_dict(self.decision),
        }
