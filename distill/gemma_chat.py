"""The Gemma student's chat format: Gemma 3's own turns, plain-text thinking.

No token is added to Gemma's 262k-token vocabulary (a new row would have to be
trained in the embedding and the tied head): the mode is a plain-text line
at the end of the user turn, and the reasoning sits between plain-text
``<think>`` and ``</think>``, which the tokenizer splits into ordinary pieces.

prompt:      <bos><start_of_turn>user\\n{question}\\n{MODE}<end_of_turn>\\n<start_of_turn>model\\n
             MODE: "Answer directly." | "Think step by step." | "Answer first, then show the steps."
direct:      {answer}<end_of_turn>
pre-think:   <think>{steps}</think>{answer}<end_of_turn>
post-think:  {answer}<think>{steps}</think><end_of_turn>

``<end_of_turn>`` is a control token llama.cpp already treats as end of generation
for Gemma; the runtime stops there.
"""

from __future__ import annotations

from thinkling.distill import chat
from thinkling.distill.chat import THINK_CLOSE, THINK_OPEN, ChatFormat

BOS = "<bos>"
EOT = "<end_of_turn>"
MODE_LINES = {
    "direct": "Answer directly.",
    "think": "Think step by step.",
    "post": "Answer first, then show the steps.",
}
MODES = tuple(MODE_LINES)

THINKLING_JSON = {
    "family": "thinkling-arith",  # same controller contract: thinking_mode picks the line
    "think_open": THINK_OPEN,
    "think_close": THINK_CLOSE,
    "modes": {"off": MODE_LINES["direct"], "on": MODE_LINES["think"], "post": MODE_LINES["post"]},
    "eos": EOT,
}

# Gemma's turn layout with the mode line; ``thinking_mode`` defaults to think.
# Earlier turns are rendered without a mode line (the student saw only single turns).
CHAT_TEMPLATE = (
    "{%- if thinking_mode is defined and thinking_mode == 'direct' -%}"
    "{%- set mode = '" + MODE_LINES["direct"] + "' -%}"
    "{%- elif thinking_mode is defined and thinking_mode == 'post' -%}"
    "{%- set mode = '" + MODE_LINES["post"] + "' -%}"
    "{%- else -%}"
    "{%- set mode = '" + MODE_LINES["think"] + "' -%}"
    "{%- endif -%}"
    "{{- '<bos>' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '<start_of_turn>user\\n' + message['content'] -}}"
    "{%- if loop.last -%}{{- '\\n' + mode -}}{%- endif -%}"
    "{{- '<end_of_turn>\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '<start_of_turn>model\\n' + message['content'] + '<end_of_turn>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"
)


def render_prompt(question: str, mode: str) -> str:
    """The prompt for one question in one mode ('direct', 'think' or 'post')."""
    return f"{BOS}<start_of_turn>user\n{question}\n{MODE_LINES[mode]}{EOT}\n<start_of_turn>model\n"


def render_completion(answer: str, steps: str, mode: str) -> str:
    """The model turn, ending with ``<end_of_turn>`` (the layout of ``distill.chat``)."""
    return chat.render_completion(answer, steps, mode, eos=EOT)


def split_completion(text: str, mode: str) -> tuple[str, str]:
    """(reasoning, answer) of a completion; tolerant like ``distill.chat.split_completion``."""
    return chat.split_completion(text, mode, eos=EOT)


GEMMA_FORMAT = ChatFormat("gemma-arith", render_prompt, render_completion, split_completion,
                          EOT, THINKLING_JSON, CHAT_TEMPLATE)
