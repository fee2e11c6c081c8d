"""Model-family reasoning formats, in one declared table.

A format says how each thinking mode is asked for (chat-template variables,
text appended to the prompt, few-shot exemplars) and where reasoning sits in
the output (open/close tags). The family comes from the model's
``thinkling.json`` or manifest, else from its chat template.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

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
    eos: str | None = None  # end-of-turn text the template writes (None: the model's EOS token)


# Base models without a chat template: exemplars that show the shape of an answer, on
# no task in particular (a model or student with a skill of its own names its exemplars
# in thinkling.json). "off": short, plain answers to varied questions; "on": a short
# chain in <think> tags, then the answer alone.
_DIRECT_EXAMPLES = [
    ("What is the largest planet in the solar system?", "Jupiter."),
    ("Which language is spoken in Brazil?", "Portuguese."),
    ("What do bees make?", "Honey."),
]
_COT_EXAMPLES = [
    ("A train leaves at 9:40 and the trip takes 35 minutes. When does it arrive?",
     "<think>9:40 plus 20 minutes is 10:00.\n35 - 20 = 15 minutes remain, so 10:15.</think>10:15"),
    ("Ann is taller than Bo, and Bo is taller than Cy. Who is the shortest?",
     "<think>Ann is taller than Bo, and Bo is taller than Cy.\nSo Cy is shorter than both.</think>Cy"),
]

FORMATS: dict[str, ThinkingFormat] = {
    # A student whose chat template reads a variable that names the mode
    # (thinking_mode = direct | think | post), as the distill kit's students do.
    "template-mode": ThinkingFormat(
        family="template-mode", modes=("off", "on", "post"), default_mode="on",
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
    # Base models without a chat template: the plain User:/Assistant: fallback, with
    # neutral few-shot exemplars for each mode.
    "fewshot-cot": ThinkingFormat(
        family="fewshot-cot", modes=("off", "on"), default_mode="off",
        fewshot={"off": _DIRECT_EXAMPLES, "on": _COT_EXAMPLES},
        # the reply opens the reasoning block itself: a base model then reasons, instead of
        # weighing whether to (its first token after "Assistant:" is otherwise a near tie)
        prompt_suffix={"on": " <think>"}, start_in_reasoning={"on": True},
    ),
}
# Names a model's thinkling.json may still carry.
ALIASES = {"thinkling-arith": "template-mode"}


def detect_format(ref: ModelRef, chat_template: str | None) -> ThinkingFormat:
    """The family from thinkling.json or the manifest, else from the template; then
    what thinkling.json declares (tags, modes, template switches, exemplars, EOS)
    replaces the family's defaults, so a student's contract is data beside it."""
    declared = (ref.thinking_format or {}).get("family") or (ref.manifest or {}).get("thinking_family")
    declared = ALIASES.get(declared, declared)
    if declared in FORMATS:
        fmt = FORMATS[declared]
    else:
        tpl = chat_template or ""
        if "enable_thinking" in tpl:
            fmt = FORMATS["qwen3"]
        elif "<think>" in tpl:
            fmt = FORMATS["deepseek-r1"]
        else:
            fmt = FORMATS["fewshot-cot"]
    return _with_contract(fmt, ref.thinking_format or {})


def _with_contract(fmt: ThinkingFormat, spec: dict) -> ThinkingFormat:
    """``fmt`` with the fields a thinkling.json declares.

    Keys: ``think_open``/``think_close`` (tags; null for none), ``modes`` (the modes
    the model has: a list, or a dict of mode -> the text the template writes for it),
    ``default_mode``, ``template_vars``/``prompt_suffix``/``fewshot`` per mode, ``eos``.
    """
    changes: dict = {}
    if "think_open" in spec:
        changes["open"] = spec["think_open"]
    if "think_close" in spec:
        changes["close"] = spec["think_close"]
    modes = spec.get("modes")
    if modes:
        changes["modes"] = tuple(m for m in ("off", "on", "post") if m in modes)
    for key in ("default_mode", "eos"):
        if spec.get(key):
            changes[key] = spec[key]
    for key in ("template_vars", "prompt_suffix"):
        if isinstance(spec.get(key), dict):
            changes[key] = dict(spec[key])
    if isinstance(spec.get("fewshot"), dict):
        changes["fewshot"] = {m: [tuple(pair) for pair in pairs] for m, pairs in spec["fewshot"].items()}
    if not changes:
        return fmt
    out = replace(fmt, **changes)
    if out.default_mode not in out.modes:
        out = replace(out, default_mode=out.modes[0] if out.modes else "off")
    return out
