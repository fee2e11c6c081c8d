"""Runtime results and model facts -> Ollama's response objects, as plain dicts.

Durations are nanoseconds, as Ollama sends them, taken from the runtime's
``Timings``: ``prompt_eval_duration`` is the prefill, ``eval_duration`` the
decode, ``load_duration`` the model load (reported once, on the first request
after startup, as the engine does); ``total_duration`` is the request's wall
time from arrival, queue included. thinkling's ``decision`` rides along on the
final object, with ``native_done_reason`` (the runtime's own finish reason).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..api.responses import FINISH
from ..modelinfo import ModelInfo
from ..types import Decision, GenerationResult, Timings, decision_dict

_NS_PER_MS = 1_000_000


def now_rfc3339() -> str:
    """``created_at`` as Ollama writes it (UTC, RFC 3339, ``Z``)."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def counters(timings: Timings | None, elapsed_s: float) -> dict:
    """Ollama's counters and durations (ns) for one finished generation."""
    t = timings or Timings()
    return {"total_duration": int(elapsed_s * 1e9), "load_duration": int(t.load_ms * _NS_PER_MS),
            "prompt_eval_count": t.prompt_tokens, "prompt_eval_duration": int(t.prompt_ms * _NS_PER_MS),
            "eval_count": t.completion_tokens, "eval_duration": int(t.decode_ms * _NS_PER_MS)}


class Reply:
    """The objects of one ``/api/chat`` (``chat=True``) or ``/api/generate`` response:
    ``piece`` while streaming, ``final`` to end a stream, ``whole`` when not streaming.
    ``joined``: a raw prompt has no reasoning markup, so its reasoning text (if the
    runtime split any) stays in the response, byte for byte."""

    def __init__(self, model: str, chat: bool, joined: bool = False):
        self.model, self.chat, self.joined = model, chat, joined

    def piece(self, text: str, reasoning: str) -> dict:
        if self.joined:
            text, reasoning = text + reasoning, ""
        thinking = {"thinking": reasoning} if reasoning else {}
        if self.chat:
            body: dict = {"message": {"role": "assistant", "content": text, **thinking}}
        else:
            body = {"response": text, **thinking}
        return {"model": self.model, "created_at": now_rfc3339(), **body, "done": False}

    def final(self, finish: str | None, timings: Timings | None, decision: Decision | None, elapsed_s: float,
              text: str = "", reasoning: str = "") -> dict:
        return {**self.piece(text, reasoning), "done": True, "done_reason": FINISH.get(finish, finish),
                "native_done_reason": finish, **counters(timings, elapsed_s), "decision": decision_dict(decision)}

    def whole(self, result: GenerationResult, elapsed_s: float) -> dict:
        return self.final(result.finish_reason, result.timings, result.decision, elapsed_s,
                          result.text, result.reasoning)

    def loaded(self) -> dict:
        """Ollama's answer to a request without a prompt: the model is loaded (it always is here)."""
        return {**self.piece("", ""), "done": True, "done_reason": "load"}


def parameter_size(n: int | None) -> str:
    """A parameter count as Ollama prints it: ``268.10M``, ``8.0B``."""
    if not n:
        return ""
    for unit, scale, digits in (("B", 1e9, 1), ("M", 1e6, 2), ("K", 1e3, 2)):
        if n >= scale:
            return f"{n / scale:.{digits}f}{unit}"
    return str(n)


@dataclass(frozen=True)
class ModelFacts:
    """What Ollama's model listings show about one model file."""

    name: str
    path: Path
    info: ModelInfo
    digest: str  # sha256 from the converter's manifest; "" when there is none
    template: str  # the GGUF's chat template, "" when none
    thinking: bool  # the model has a reasoning mode ("on")
    description: str = ""

    @property
    def tag(self) -> str:
        return f"{self.name}:latest"

    def details(self) -> dict:
        arch = self.info.architecture or ""
        quant = (self.info.quantization or "").upper()
        return {"parent_model": "", "format": self.info.format, "family": arch, "families": [arch] if arch else None,
                "parameter_size": parameter_size(self.info.parameters), "quantization_level": quant}

    def modified_at(self) -> str:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = time.time()
        return datetime.fromtimestamp(mtime, timezone.utc).isoformat().replace("+00:00", "Z")

    def tag_entry(self) -> dict:
        """One entry of ``/api/tags``."""
        return {"name": self.tag, "model": self.tag, "modified_at": self.modified_at(),
                "size": self.info.size_bytes, "digest": self.digest, "details": self.details()}

    def show(self, served: dict | None) -> dict:
        """``/api/show``; ``served`` adds the loaded engine's facts when this is its model."""
        info = self.info
        model_info: dict = {"general.architecture": info.architecture, "general.parameter_count": info.parameters,
                            "general.basename": self.name, "thinkling.path": str(self.path)}
        if info.architecture and info.context_length:
            model_info[f"{info.architecture}.context_length"] = info.context_length
        model_info.update(served or {})
        return {"license": "", "modelfile": f"# served by thinkling\nFROM {self.path}\n", "parameters": "",
                "template": self.template, "details": self.details(), "model_info": model_info,
                "capabilities": ["completion"] + (["thinking"] if self.thinking else []),
                "modified_at": self.modified_at()}
