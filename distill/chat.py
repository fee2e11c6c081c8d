"""The students' chat formats, fixed: the runtime and the thinking controller rely on them.

Every format writes the same (question, mode, steps, answer) data; only the prompt's
turns and the end-of-turn text differ. One prompt renderer per format:

arith (the toy student, ``render_prompt``; its own special tokens):
    prompt:      <|bos|><|user|>{question}{MODE}<|assistant|>   MODE in <|direct|> <|think|> <|post|>
gemma (Gemma 3's turns, ``render_gemma_prompt``):
    prompt:      <bos><start_of_turn>user\\n{question}\\n{MODE}<end_of_turn>\\n<start_of_turn>model\\n
chatml (SmolLM2-Instruct's turns, ``render_chatml_prompt``):
    prompt:      <|im_start|>user\\n{question}\\n{MODE}<|im_end|>\\n<|im_start|>assistant\\n
    MODE (gemma, chatml): "Answer directly." | "Think step by step." | "Answer first, then show the steps."

and in each, with EOS the format's end of turn (``<|end|>``, ``<end_of_turn>``, ``<|im_end|>``):
    direct:      {answer}EOS
    pre-think:   <think>{steps}</think>{answer}EOS
    post-think:  {answer}<think>{steps}</think>EOS

Gemma and ChatML get no new token (a new row would have to be trained in Gemma's 262k-row
tied embedding): the mode is a plain-text line at the end of the user turn and the
reasoning sits between plain-text ``<think>`` and ``</think>``, which their tokenizers
split into ordinary pieces. ``<end_of_turn>`` and ``<|im_end|>`` are the models' own end
of turn, where llama.cpp already stops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

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


# --- the plain-text mode formats of pretrained bases (Gemma 3, ChatML) ---------------

MODE_LINES = {
    "direct": "Answer directly.",
    "think": "Think step by step.",
    "post": "Answer first, then show the steps.",
}
GEMMA_EOT = "<end_of_turn>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"


def render_gemma_prompt(question: str, mode: str) -> str:
    """The Gemma student's prompt for one question in one mode ('direct', 'think' or 'post')."""
    return f"<bos><start_of_turn>user\n{question}\n{MODE_LINES[mode]}{GEMMA_EOT}\n<start_of_turn>model\n"


def render_chatml_prompt(question: str, mode: str) -> str:
    """The ChatML student's prompt for one question in one mode ('direct', 'think' or 'post')."""
    return f"{IM_START}user\n{question}\n{MODE_LINES[mode]}{IM_END}\n{IM_START}assistant\n"


def _mode_line_template(bos: str, user: str, model: str, eot: str) -> str:
    """A Jinja chat template of these turns with the mode line on the last user turn.

    ``thinking_mode`` picks the line and defaults to think; earlier user turns get no
    mode line (the students saw only single turns).
    """
    return (
        "{%- if thinking_mode is defined and thinking_mode == 'direct' -%}"
        "{%- set mode = '" + MODE_LINES["direct"] + "' -%}"
        "{%- elif thinking_mode is defined and thinking_mode == 'post' -%}"
        "{%- set mode = '" + MODE_LINES["post"] + "' -%}"
        "{%- else -%}"
        "{%- set mode = '" + MODE_LINES["think"] + "' -%}"
        "{%- endif -%}"
        + ("{{- '" + bos + "' -}}" if bos else "")
        + "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        "{{- '" + user + "\\n' + message['content'] -}}"
        "{%- if loop.last -%}{{- '\\n' + mode -}}{%- endif -%}"
        "{{- '" + eot + "\\n' -}}"
        "{%- elif message['role'] == 'assistant' -%}"
        "{{- '" + model + "\\n' + message['content'] + '" + eot + "\\n' -}}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '" + model + "\\n' -}}{%- endif -%}"
    )


def _mode_line_json(family: str, eos: str) -> dict:
    # the same controller contract as the arith student's: thinking_mode picks the line
    return {"family": family, "think_open": THINK_OPEN, "think_close": THINK_CLOSE,
            "modes": {"off": MODE_LINES["direct"], "on": MODE_LINES["think"], "post": MODE_LINES["post"]},
            "eos": eos}


GEMMA_FORMAT = ChatFormat(
    "gemma-arith", render_gemma_prompt, partial(render_completion, eos=GEMMA_EOT),
    partial(split_completion, eos=GEMMA_EOT), GEMMA_EOT, _mode_line_json("thinkling-arith", GEMMA_EOT),
    _mode_line_template("<bos>", "<start_of_turn>user", "<start_of_turn>model", GEMMA_EOT))
CHATML_FORMAT = ChatFormat(
    "chatml", render_chatml_prompt, partial(render_completion, eos=IM_END),
    partial(split_completion, eos=IM_END), IM_END, _mode_line_json("thinkling-chatml", IM_END),
    _mode_line_template("", f"{IM_START}user", f"{IM_START}assistant", IM_END))

# The formats by name, as ``--chat`` and a recipe's ``chat_format`` pick them.
FORMATS: dict[str, ChatFormat] = {"arith": ARITH_FORMAT, "gemma": GEMMA_FORMAT, "chatml": CHATML_FORMAT}
