"""Runtime results -> OpenAI's response objects and stream events, as plain dicts.

The HTTP server serialises these (JSON body or SSE ``data:`` lines); nothing here
knows a transport. The thinking decision goes on the wire as
``Decision.to_dict()``.
"""

from __future__ import annotations

import time
import uuid

from ..types import Chunk, GenerationResult, Timings, decision_dict

# The runtime's finish reasons -> OpenAI's. A deadline cut is a truncation
# ("length"); the exact reason is kept in ``native_finish_reason``.
FINISH = {"stop": "stop", "length": "length", "deadline": "length", "cancelled": "stop"}


def timings_dict(t: Timings) -> dict:
    """llama-server's timing keys, plus thinkling's queue/load/TTFT/total."""
    decode_n = max(t.completion_tokens - 1, 0)
    return {
        "prompt_n": t.prompt_tokens - t.cached_tokens,
        "prompt_ms": round(t.prompt_ms, 3),
        "prompt_per_token_ms": round(t.prompt_ms / max(t.prompt_tokens - t.cached_tokens, 1), 3),
        "prompt_per_second": round((t.prompt_tokens - t.cached_tokens) / (t.prompt_ms / 1000), 3)
        if t.prompt_ms > 0 else None,
        "predicted_n": t.completion_tokens,
        "predicted_ms": round(t.decode_ms, 3),
        "predicted_per_token_ms": round(t.decode_ms / decode_n, 3) if decode_n else None,
        "predicted_per_second": round(t.decode_tok_s, 3) if decode_n else None,
        "cache_n": t.cached_tokens,
        "queue_ms": round(t.queue_ms, 3),
        "load_ms": round(t.load_ms, 3),
        "ttft_ms": round(t.ttft_ms, 3),
        "total_ms": round(t.total_ms, 3),
        "drafted_tokens": t.drafted_tokens,
        "accepted_tokens": t.accepted_tokens,
    }


def usage_dict(t: Timings, reasoning_tokens: int) -> dict:
    return {"prompt_tokens": t.prompt_tokens, "completion_tokens": t.completion_tokens,
            "total_tokens": t.prompt_tokens + t.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": t.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens}}


class ReasoningTally:
    """Counts completion tokens whose text landed in the reasoning (approximate
    by a token or two: tag tokens and held-back text carry no delta)."""

    def __init__(self) -> None:
        self.tokens = 0

    def see(self, chunk: Chunk) -> Chunk:
        if chunk.reasoning and not chunk.text:
            self.tokens += len(chunk.token_ids)
        return chunk


class _Envelope:
    """id/created/model shared by every object of one response."""

    def __init__(self, model: str, prefix: str, obj: str):
        self.id = f"{prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.object = obj

    def wrap(self, choices: list, **extra) -> dict:
        return {"id": self.id, "object": self.object, "created": self.created, "model": self.model,
                "system_fingerprint": "thinkling", "choices": choices, **extra}


def _finish_fields(reason: str | None) -> dict:
    return {"finish_reason": FINISH.get(reason, reason) if reason else None,
            "native_finish_reason": reason}


def chat_response(result: GenerationResult, reasoning_tokens: int) -> dict:
    env = _Envelope(result.model, "chatcmpl", "chat.completion")
    message = {"role": "assistant", "content": result.text,
               "reasoning_content": result.reasoning or None}
    return env.wrap([{"index": 0, "message": message, "logprobs": None, **_finish_fields(result.finish_reason)}],
                    usage=usage_dict(result.timings, reasoning_tokens),
                    timings=timings_dict(result.timings), decision=decision_dict(result.decision))


def completion_response(result: GenerationResult) -> dict:
    env = _Envelope(result.model, "cmpl", "text_completion")
    text = result.text + result.reasoning  # raw prompts have no reasoning markup; keep every byte
    return env.wrap([{"index": 0, "text": text, "logprobs": None, **_finish_fields(result.finish_reason)}],
                    usage=usage_dict(result.timings, 0), timings=timings_dict(result.timings),
                    decision=decision_dict(result.decision))


class ChatEvents:
    """SSE payloads of one streamed chat completion."""

    def __init__(self, model: str, include_usage: bool):
        self.env = _Envelope(model, "chatcmpl", "chat.completion.chunk")
        self.include_usage = include_usage
        self.tally = ReasoningTally()
        self._sent_role = False

    def _choice(self, delta: dict, reason: str | None = None) -> dict:
        return {"index": 0, "delta": delta, "logprobs": None, **_finish_fields(reason)}

    def events(self, chunk: Chunk) -> list[dict]:
        self.tally.see(chunk)
        out = []
        delta: dict = {}
        if not self._sent_role:
            delta, self._sent_role = {"role": "assistant", "content": ""}, True
        if chunk.text:
            delta["content"] = chunk.text
        if chunk.reasoning:
            delta["reasoning_content"] = chunk.reasoning
        if delta:
            out.append(self.env.wrap([self._choice(delta)]))
        if chunk.finish_reason is not None:
            t = chunk.timings or Timings()
            out.append(self.env.wrap([self._choice({}, chunk.finish_reason)], timings=timings_dict(t),
                                     decision=decision_dict(chunk.decision)))
            if self.include_usage:
                out.append(self.env.wrap([], usage=usage_dict(t, self.tally.tokens)))
        return out


class CompletionEvents:
    """SSE payloads of one streamed text completion."""

    def __init__(self, model: str, include_usage: bool):
        self.env = _Envelope(model, "cmpl", "text_completion")
        self.include_usage = include_usage

    def events(self, chunk: Chunk) -> list[dict]:
        out = []
        text = chunk.text + chunk.reasoning
        if text:
            out.append(self.env.wrap([{"index": 0, "text": text, "logprobs": None, **_finish_fields(None)}]))
        if chunk.finish_reason is not None:
            t = chunk.timings or Timings()
            out.append(self.env.wrap([{"index": 0, "text": "", "logprobs": None,
                                       **_finish_fields(chunk.finish_reason)}],
                                     timings=timings_dict(t), decision=decision_dict(chunk.decision)))
            if self.include_usage:
                out.append(self.env.wrap([], usage=usage_dict(t, 0)))
        return out
