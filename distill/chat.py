"""The student's chat format, fixed: the runtime and the thinking controller rely on it.

prompt:      <|bos|><|user|>{question}{MODE}<|assistant|>   MODE in <|direct|> <|think|> <|post|>
direct:      {answer}<|end|>
pre-think:   <think>{steps}</think>{answer}<|end|>
post-think:  {answer}<think>{steps}</think><|end|>
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

PAD = "<|pad|>"
BOS = "<|bos|>"
EOS = "<|end|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
MODE_TOKENS = {"direct": "<|direct|>", "think": "<|think|>", "post": "<|post|>"}
MODES = tuple(MODE_TOKENS)
SPECIAL_TOKENS = (PAD, BOS, EOS, USER, ASSISTANT, *MODE_TOKENS.values(), THINK_OPEN, THINK_CLOSE)

# Read by the runtime's thinking-format table; written next to the model files.
THINKLING_JSON = {
    "family": "thinkling-arith",
    "think_open": THINK_OPEN,
    "think_close": THINK_CLOSE,
    "modes": {"off": MODE_TOKENS["direct"], "on": MODE_TOKENS["think"], "post": MODE_TOKENS["post"]},
    "eos": EOS,
}

# Renders [{"role": "user", "content": ...}] to the prompt above; the mode comes
# from the template variable ``thinking_mode`` and defaults to thinking on.
CHAT_TEMPLATE = (
    "{%- if thinking_mode is defined and thinking_mode == 'direct' -%}"
    "{%- set mode = '<|direct|>' -%}"
    "{%- elif thinking_mode is defined and thinking_mode == 'post' -%}"
    "{%- set mode = '<|post|>' -%}"
    "{%- else -%}"
    "{%- set mode = '<|think|>' -%}"
    "{%- endif -%}"
    "{{- '<|bos|>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|user|>' + message['content'] + mode + '<|assistant|>' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- message['content'] + '<|end|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
)


def render_prompt(question: str, mode: str) -> str:
    """The prompt for one question in one mode ('direct', 'think' or 'post')."""
    return f"{BOS}{USER}{question}{MODE_TOKENS[mode]}{ASSISTANT}"


def render_completion(answer: str, steps: str, mode: str, eos: str = EOS) -> str:
    """The assistant text, ending with ``eos`` (``<|end|>`` for this student)."""
    if mode == "direct":
        return f"{answer}{eos}"
    if mode == "think":
        return f"{THINK_OPEN}{steps}{THINK_CLOSE}{answer}{eos}"
    if mode == "post":
        return f"{answer}{THINK_OPEN}{steps}{THINK_CLOSE}{eos}"
    raise ValueError(f"unknown mode {mode!r}")


def split_completion(text: str, mode: str, eos: str = EOS) -> tuple[str, str]:
    """(reasoning, answer) of a completion; reasoning is '' when there is none.

    Tolerant of a missing ``<|end|>`` and of a missing ``</think>`` (a chain cut
    by the token budget), so it can score raw generations.
    """
    text = text.split(eos, 1)[0]
    if mode == "post":
        answer, _, rest = text.partition(THINK_OPEN)
        return rest.split(THINK_CLOSE, 1)[0], answer.strip()
    if text.startswith(THINK_OPEN):
        reasoning, _, answer = text[len(THINK_OPEN) :].partition(THINK_CLOSE)
        return reasoning, answer.strip()
    return "", text.strip()


@dataclass(frozen=True)
class ChatFormat:
    """One student's rendering of the same (question, mode, steps, answer) data.

    The teacher, noise and filter work on the task's content; a recipe only
    decides how it is written into its model's chat format.
    """

    name: str
    render_prompt: Callable[[str, str], str]
    render_completion: Callable[[str, str, str], str]
    split_completion: Callable[[str, str], tuple[str, str]]
    eos: str
    thinkling_json: dict
    chat_template: str


ARITH_FORMAT = ChatFormat("thinkling-arith", render_prompt, render_completion, split_completion,
                          EOS, THINKLING_JSON, CHAT_TEMPLATE)
