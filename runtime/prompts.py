"""Prompt rendering: chat messages -> prompt text.

A model's own chat template (the jinja string a GGUF carries in
``tokenizer.chat_template``) is used when present. Base models without one get
the documented plain fallback (see docs/runtime.md):

    <system text>\n\n          (only if there is a system message)
    User: <text>\n
    Assistant: <text>\n
    User: <text>\n
    Assistant:

with ``"\\nUser:"`` added as a stop string so the model does not write the
next user turn itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache

from .errors import InvalidRequest
from .types import Message

FALLBACK_STOPS = ["\nUser:"]
ROLES = ("system", "user", "assistant")


@dataclass
class RenderedPrompt:
    text: str
    add_bos: bool  # tokenize with the model's add-special rule (False: the template wrote BOS)
    stops: list[str] = field(default_factory=list)
    template: str = "fallback"  # "model" | "fallback" | "raw"


def validate_messages(messages: list[Message]) -> None:
    if not messages:
        raise InvalidRequest("messages must not be empty", param="messages")
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {ROLES}, got {m.role!r}",
                                 param=f"messages[{i}].role")
        if not isinstance(m.content, str):
            raise InvalidRequest(f"messages[{i}].content must be a string", param=f"messages[{i}].content")


def render_fallback(messages: list[Message]) -> str:
    parts = []
    system = "\n".join(m.content for m in messages if m.role == "system")
    if system:
        parts.append(system + "\n\n")
    for m in messages:
        if m.role == "user":
            parts.append(f"User: {m.content}\n")
        elif m.role == "assistant":
            parts.append(f"Assistant: {m.content}\n")
    parts.append("Assistant:")
    return "".join(parts)


def _jinja_env():
    # The sandbox keeps a template that came inside a model file from touching
    # Python internals; templates are data from the model, not trusted code.
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(msg):
        raise InvalidRequest(f"chat template refused the conversation: {msg}", param="messages")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


@lru_cache(maxsize=8)
def _compiled(template: str):
    """Compile a chat template once: building the sandbox and compiling cost ~5 ms
    a call, which was most of a tiny student's time to first token."""
    return _jinja_env().from_string(template)


def render_template(template: str, messages: list[Message], bos_token: str = "",
                    eos_token: str = "", **kwargs) -> str:
    try:
        tpl = _compiled(template)
    except Exception as e:
        raise InvalidRequest(f"the model's chat template does not parse: {e}", param="messages") from None
    return tpl.render(
        messages=[{"role": m.role, "content": m.content} for m in messages],
        add_generation_prompt=True, bos_token=bos_token, eos_token=eos_token, **kwargs,
    )


def render_chat(messages: list[Message], template: str | None, bos_token: str = "",
                eos_token: str = "", **template_kwargs) -> RenderedPrompt:
    """Render ``messages`` with the model's template, or the plain fallback."""
    validate_messages(messages)
    if not template:
        return RenderedPrompt(render_fallback(messages), add_bos=True,
                              stops=list(FALLBACK_STOPS), template="fallback")
    text = render_template(template, messages, bos_token, eos_token, **template_kwargs)
    # If the template wrote BOS itself, tokenize without adding specials (else
    # BOS doubles); otherwise let the model's own add_bos rule apply.
    wrote_bos = bool(bos_token) and text.startswith(bos_token)
    return RenderedPrompt(text, add_bos=not wrote_bos, template="model")
