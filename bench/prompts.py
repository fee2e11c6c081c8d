"""Prompt classes: the built-in set (``prompts.json`` beside this file), another
built-in set by name (``prompts-arith.json`` is ``--prompts arith``, for the
arithmetic student's 256-token context) or a user file given with ``--prompts``.

A file is a JSON list or JSONL, one object per class::

    {"name": "short", "messages": [{"role": "user", "content": "..."}],
     "max_tokens": 32, "verdict": true}

``text`` is shorthand for a single user message; ``prompt`` makes a raw
completion request instead of a chat. ``verdict: true`` marks the classes the
profile's pass/fail is judged on (the built-in set judges the short chat
question, the headline case; every class still gets its own p95 checks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from thinkling.runtime.types import GenerationRequest, Message, SamplingParams

BUILTIN = Path(__file__).with_name("prompts.json")
_KEYS = {"name", "description", "messages", "text", "prompt", "max_tokens", "verdict"}


class PromptFileError(ValueError):
    """A ``--prompts`` file that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class PromptCase:
    name: str
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 32
    verdict: bool = False
    description: str = ""

    def request(self, *, max_tokens: int | None = None, think: str = "off",
                nonce: str | None = None) -> GenerationRequest:
        """A greedy request for this case. ``nonce`` is put in front of the last
        user message (or the raw prompt) so a server cannot reuse a cached prefix."""
        common = dict(max_tokens=max_tokens or self.max_tokens,
                      sampling=SamplingParams(temperature=0.0), think=think)
        if self.prompt is not None:
            return GenerationRequest(prompt=(f"{nonce} " if nonce else "") + self.prompt, **common)
        return GenerationRequest(messages=self.chat_messages(nonce), **common)

    def chat_messages(self, nonce: str | None = None) -> list[Message]:
        msgs = list(self.messages or ())
        if nonce:
            i = max(i for i, m in enumerate(msgs) if m.role == "user")
            msgs[i] = Message("user", f"{nonce} {msgs[i].content}")
        return msgs

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "max_tokens": self.max_tokens,
                "verdict": self.verdict, "kind": "raw" if self.prompt is not None else "chat"}


def _case(obj: dict, where: str) -> PromptCase:
    if not isinstance(obj, dict):
        raise PromptFileError(f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - _KEYS
    if unknown:
        raise PromptFileError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(_KEYS)})")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise PromptFileError(f"{where}: 'name' must be a non-empty string")
    given = [k for k in ("messages", "text", "prompt") if k in obj]
    if len(given) != 1:
        raise PromptFileError(f"{where} ({name}): give exactly one of messages, text or prompt")
    max_tokens = obj.get("max_tokens", 32)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise PromptFileError(f"{where} ({name}): max_tokens must be a positive integer")
    messages, prompt = None, None
    if "prompt" in obj:
        prompt = obj["prompt"]
        if not isinstance(prompt, str) or not prompt:
            raise PromptFileError(f"{where} ({name}): 'prompt' must be a non-empty string")
    elif "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"]:
            raise PromptFileError(f"{where} ({name}): 'text' must be a non-empty string")
        messages = (Message("user", obj["text"]),)
    else:
        raw = obj["messages"]
        if not isinstance(raw, list) or not raw or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in raw):
            raise PromptFileError(f"{where} ({name}): 'messages' must be a list of {{role, content}} strings")
        if not any(m["role"] == "user" for m in raw):
            raise PromptFileError(f"{where} ({name}): 'messages' needs at least one user message")
        messages = tuple(Message(m["role"], m["content"]) for m in raw)
    return PromptCase(name=name, messages=messages, prompt=prompt, max_tokens=max_tokens,
                      verdict=bool(obj.get("verdict", False)), description=str(obj.get("description", "")))


def parse_cases(text: str, source: str = "<prompts>") -> list[PromptCase]:
    """Parse a JSON list or JSONL document into prompt cases."""
    stripped = text.strip()
    if not stripped:
        raise PromptFileError(f"{source}: empty")
    if stripped.startswith("["):
        try:
            objs = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{source}: not valid JSON ({e})") from None
        where = [f"{source}[{i}]" for i in range(len(objs))]
    else:
        objs, where = [], []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                objs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PromptFileError(f"{source}:{lineno}: not valid JSON ({e})") from None
            where.append(f"{source}:{lineno}")
    cases = [_case(o, w) for o, w in zip(objs, where)]
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise PromptFileError(f"{source}: class names must be unique, got {names}")
    return cases


def builtin_sets() -> dict[str, Path]:
    """Built-in prompt sets by name: ``default`` (prompts.json) and prompts-NAME.json."""
    here = BUILTIN.parent
    return {"default": BUILTIN, **{f.stem.removeprefix("prompts-"): f for f in sorted(here.glob("prompts-*.json"))}}


def load_cases(path: str | Path | None = None) -> list[PromptCase]:
    """The built-in classes, a built-in set by name (e.g. ``arith``), or the ones in ``path``."""
    sets = builtin_sets()
    if path and not Path(path).exists() and str(path) in sets:
        path = sets[str(path)]
    p = Path(path) if path else BUILTIN
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PromptFileError(f"cannot read prompts file {p}: {e.strerror or e}") from None
    return parse_cases(text, str(p))
