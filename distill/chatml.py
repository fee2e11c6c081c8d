"""The ChatML student format (SmolLM2-Instruct): its own turns, plain-text thinking.

As for Gemma (``distill.gemma_chat``), no token is added: the mode is a plain-text
line at the end of the user turn, the reasoning sits between plain-text
``<think>`` and ``</think>``, and ``<|im_end|>`` (the model's own end of turn) ends it.

prompt:      <|im_start|>user\\n{question}\\n{MODE}<|im_end|>\\n<|im_start|>assistant\\n
direct:      {answer}<|im_end|>
pre-think:   <think>{steps}</think>{answer}<|im_end|>
post-think:  {answer}<think>{steps}</think><|im_end|>
"""

from __future__ import annotations

from thinkling.distill import chat
from thinkling.distill.chat import THINK_CLOSE, THINK_OPEN, ChatFormat
from thinkling.distill.gemma_chat import MODE_LINES

IM_START, IM_END = "<|im_start|>", "<|im_end|>"

THINKLING_JSON = {
    "family": "thinkling-chatml",
    "think_open": THINK_OPEN,
    "think_close": THINK_CLOSE,
    "modes": {"off": MODE_LINES["direct"], "on": MODE_LINES["think"], "post": MODE_LINES["post"]},
    "eos": IM_END,
}

# ChatML turns with the mode line on the last user turn; ``thinking_mode`` defaults to think.
CHAT_TEMPLATE = (
    "{%- if thinking_mode is defined and thinking_mode == 'direct' -%}"
    "{%- set mode = '" + MODE_LINES["direct"] + "' -%}"
    "{%- elif thinking_mode is defined and thinking_mode == 'post' -%}"
    "{%- set mode = '" + MODE_LINES["post"] + "' -%}"
    "{%- else -%}"
    "{%- set mode = '" + MODE_LINES["think"] + "' -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<|im_start|>user\\n' + message['content'] -}}"
    "{%- if loop.last -%}{{- '\\n' + mode -}}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def render_prompt(question: str, mode: str) -> str:
    """The prompt for one question in one mode ('direct', 'think' or 'post')."""
    return f"{IM_START}user\n{question}\n{MODE_LINES[mode]}{IM_END}\n{IM_START}assistant\n"


def render_completion(answer: str, steps: str, mode: str) -> str:
    """The assistant turn, ending with ``<|im_end|>`` (the layout of ``distill.chat``)."""
    return chat.render_completion(answer, steps, mode, eos=IM_END)


def split_completion(text: str, mode: str) -> tuple[str, str]:
    """(reasoning, answer) of a completion; tolerant like ``distill.chat.split_completion``."""
    return chat.split_completion(text, mode, eos=IM_END)


CHATML_FORMAT = ChatFormat("chatml", render_prompt, render_completion, split_completion,
                           IM_END, THINKLING_JSON, CHAT_TEMPLATE)
