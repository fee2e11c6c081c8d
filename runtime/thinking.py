"""The thinking layer: turns a request into a generation plan in the right
reasoning mode for this model's family, and streams it.

Model-family formats live in one declared table (``FORMATS``). A format says
how each mode is asked for (chat-template variables, or text the prompt ends
with) and where reasoning sits in the output (open/close tags). The adaptive
``auto`` decision builds on this (see docs/thinking.md); until a per-model
profile exists, ``auto`` means the family's default mode.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .backends.base import Backend
from .errors import InvalidRequest
from .generate import GenerationPlan, ReasoningMarkup, stream_generate
from .models import ModelRef
from .prompts import render_chat
from .types import Chunk, GenerationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThinkingFormat:
    """How one model family expresses reasoning.

    ``template_vars[mode]`` are passed to the chat template for that mode;
    ``prompt_suffix[mode]`` is appended to the rendered prompt (e.g. an empty
    think block that makes a reasoning model answer directly).
    """

    family: str
    open: str | None = "<think>"
    close: str | None = "</think>"
    modes: tuple[str, ...] = ("off",)
    default_mode: str = "off"
    template_vars: dict[str, dict] = field(default_factory=dict)
    prompt_suffix: dict[str, str] = field(default_factory=dict)
    start_in_reasoning: dict[str, bool] = field(default_factory=dict)


FORMATS: dict[str, ThinkingFormat] = {
    # The distill-kit student: mode chosen by a control token the template writes.
    "thinkling-arith": ThinkingFormat(
        family="thinkling-arith", modes=("off", "on", "post"), default_mode="on",
        template_vars={"off": {"thinking_mode": "direct"}, "on": {"thinking_mode": "think"},
                       "post": {"thinking_mode": "post"}},
    ),
    # Qwen3 hybrid models: the template's enable_thinking switch.
    "qwen3": ThinkingFormat(
        family="qwen3", modes=("off", "on"), default_mode="on",
        template_vars={"off": {"enable_thinking": False}, "on": {"enable_thinking": True}},
    ),
    # DeepSeek-R1 distills: the template opens <think>; "off" pre-fills an empty block.
    "deepseek-r1": ThinkingFormat(
        family="deepseek-r1", modes=("off", "on"), default_mode="on",
        prompt_suffix={"off": "\n\n</think>\n\n"}, start_in_reasoning={"on": True},
    ),
    # Base or plain chat models: no reasoning markup, answers directly.
    "plain": ThinkingFormat(family="plain", open=None, close=None),
}


def detect_format(ref: ModelRef, chat_template: str | None) -> ThinkingFormat:
    """Pick the family from thinkling.json or the manifest, else from the template."""
    declared = (ref.thinking_format or {}).get("family") or (ref.manifest or {}).get("thinking_family")
    if declared in FORMATS:
        return FORMATS[declared]
    tpl = chat_template or ""
    if "enable_thinking" in tpl:
        return FORMATS["qwen3"]
    if "<think>" in tpl:
        return FORMATS["deepseek-r1"]
    return FORMATS["plain"]


class ThinkingController:
    """Chooses the reasoning mode per request and streams the generation."""

    def __init__(self, backend: Backend, ref: ModelRef):
        self.backend = backend
        self.ref = ref
        self.template = backend.chat_template()
        self.format = detect_format(ref, self.template)
        meta = backend.metadata()
        self.bos_token = meta.get("thinkling.bos_text", "")
        self.eos_token = meta.get("thinkling.eos_text", "")

    def choose_mode(self, req: GenerationRequest) -> tuple[str, dict]:
        fmt = self.format
        if req.think == "auto":
            mode, why = fmt.default_mode, f"no calibrated profile; {fmt.family} default"
        elif req.think in fmt.modes:
            mode, why = req.think, "requested"
        else:
            mode, why = fmt.default_mode, f"{fmt.family} does not support {req.think!r}; using its default"
        return mode, {"mode": mode, "requested": req.think, "family": fmt.family, "reason": why}

    def _chat_plan(self, req: GenerationRequest, mode: str) -> tuple[list[int], list[str], ReasoningMarkup | None]:
        fmt = self.format
        rendered = render_chat(req.messages, self.template, self.bos_token, self.eos_token,
                               **fmt.template_vars.get(mode, {}))
        text = rendered.text + fmt.prompt_suffix.get(mode, "")
        tokens = self.backend.tokenize(text, add_special=rendered.add_bos, parse_special=True)
        markup = None
        if fmt.open and fmt.close:
            markup = ReasoningMarkup(fmt.open, fmt.close, fmt.start_in_reasoning.get(mode, False),
                                     budget=req.reasoning_budget)
        return tokens, rendered.stops, markup

    def stream(self, req: GenerationRequest, should_stop: Callable[[], str | None]) -> Iterator[Chunk]:
        """Plan ``req`` and yield its chunks; the last chunk carries the decision."""
        if req.prompt is not None:
            if not req.prompt:
                raise InvalidRequest("prompt must not be empty", param="prompt")
            tokens = self.backend.tokenize(req.prompt, add_special=True, parse_special=False)
            stops, markup, decision = [], None, {"mode": "raw", "requested": req.think,
                                                 "reason": "raw completion prompt"}
        else:
            mode, decision = self.choose_mode(req)
            tokens, stops, markup = self._chat_plan(req, mode)
        plan = GenerationPlan(prompt_tokens=tokens, max_tokens=req.max_tokens, sampling=req.sampling,
                              stops=list(req.stop) + stops, markup=markup, logprobs=req.logprobs,
                              should_stop=should_stop, started_at=req.submitted_at)
        for chunk in stream_generate(self.backend, plan):
            if chunk.finish_reason is not None:
                chunk.decision = decision
            yield chunk
