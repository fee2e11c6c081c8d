"""Model-family reasoning formats, in one declared table.

A format says how each thinking mode is asked for (chat-template variables,
text appended to the prompt, few-shot exemplars) and where reasoning sits in
the output (open/close tags). The family comes from the model's
``thinkling.json`` or manifest, else from its chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models import ModelRef


@dataclass(frozen=True)
class ThinkingFormat:
    """How one model family expresses reasoning.

    ``template_vars[mode]`` are passed to the chat template for that mode;
    ``prompt_suffix[mode]`` is appended to the rendered prompt (e.g. an empty
    think block that makes a reasoning model answer directly);
    ``fewshot[mode]`` is a list of (user, assistant) exemplars put before the
    conversation (chain-of-thought prompting for base models).
    """

    family: str
    open: str | None = "<think>"
    close: str | None = "</think>"
    modes: tuple[str, ...] = ("off",)
    default_mode: str = "off"
    template_vars: dict[str, dict] = field(default_factory=dict)
    prompt_suffix: dict[str, str] = field(default_factory=dict)
    start_in_reasoning: dict[str, bool] = field(default_factory=dict)
    fewshot: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


_COT_EXAMPLES = [
    ("What is 23 + 4 * 5?", "<think>4 * 5 = 20\n23 + 20 = 43</think>43"),
    ("What is 60 - 7 * 3 + 2?", "<think>7 * 3 = 21\n60 - 21 = 39\n39 + 2 = 41</think>41"),
]

FORMATS: dict[str, ThinkingFormat] = {
    # The distill-kit student: the template writes a mode control token.
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
    # Base models without a chat template: "off" is the plain User:/Assistant:
    # fallback; "on" prepends few-shot chain-of-thought exemplars.
    "fewshot-cot": ThinkingFormat(
        family="fewshot-cot", modes=("off", "on"), default_mode="off",
        fewshot={"on": _COT_EXAMPLES},
    ),
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
    return FORMATS["fewshot-cot"]
