"""A remote OpenAI-compatible server (``thinkling serve`` on a phone, or any
other) timed over HTTP: ``POST /v1/chat/completions`` with ``stream: true``,
read as server-sent events.

TTFT is the first ``delta`` with non-empty ``content`` or reasoning
(``reasoning_content``/``reasoning``); the role-only delta servers send first
does not count. Each such delta is counted as one token for the short-answer
point; the total comes from ``usage`` when the server sends it
(``stream_options.include_usage``). Every run puts a nonce in front of the
user message so the server cannot reuse a cached prompt prefix: TTFT is a
cold-prefix TTFT, as in process. Times include the network round trip.
thinkling's ``think`` field asks for the same reasoning mode as in process.
"""

from __future__ import annotations

import json
import time

import httpx

from thinkling.runtime.thinking import Decision

from ..prompts import PromptCase
from .base import SHORT_ANSWER_TOKENS, Sample, StreamClock

_REASONING_KEYS = ("reasoning_content", "reasoning")


class EndpointError(RuntimeError):
    """The endpoint answered with an error or a malformed stream."""


def _events(lines) -> list[dict]:
    """Parse SSE ``data:`` lines into JSON events, lazily; stops at ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            yield json.loads(data)
        except json.JSONDecodeError:
            raise EndpointError(f"malformed SSE data: {data[:200]!r}") from None


def _base_url(url: str) -> str:
    """``http://host:port`` from a URL given with or without ``/v1``."""
    return url.rstrip("/").removesuffix("/v1")


def _delta_text(delta: dict) -> tuple[str, str]:
    """(content, reasoning) of one streamed delta; servers name the reasoning field differently."""
    return delta.get("content") or "", next((delta[k] for k in _REASONING_KEYS if delta.get(k)), "")


class EndpointRunner:
    name = "endpoint"

    def __init__(self, url: str, *, model: str | None = None, max_tokens: int | None = None,
                 think: str | None = "off", short_tokens: int = SHORT_ANSWER_TOKENS, timeout_s: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        self.base = _base_url(url)
        self.model, self.max_tokens, self.think, self.short_tokens = model, max_tokens, think, short_tokens
        self.client = httpx.Client(timeout=timeout_s, transport=transport)
        self.load_ms: float | None = None  # the server loaded its model before we came

    def server_info(self) -> dict:
        """What the server says about its models (``GET /v1/models``), best effort."""
        try:
            r = self.client.get(f"{self.base}/v1/models")
            r.raise_for_status()
            return {"url": self.base, "models": r.json().get("data", [])}
        except (httpx.HTTPError, ValueError) as e:
            return {"url": self.base, "error": str(e)}

    def _body(self, case: PromptCase, run: int) -> dict:
        nonce = f"[run {run} {time.time_ns() % 1_000_000:06d}]"
        if case.prompt is not None:
            raise EndpointError(f"prompt class {case.name!r} is a raw completion; --endpoint runs chat classes")
        body = {
            "messages": [{"role": m.role, "content": m.content} for m in case.chat_messages(nonce)],
            "max_tokens": self.max_tokens or case.max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.model:
            body["model"] = self.model
        if self.think:
            body["think"] = self.think  # thinkling's extension; other servers ignore unknown fields
        return body

    def run(self, case: PromptCase, run: int) -> Sample:
        body = self._body(case, run)
        clock = StreamClock(self.short_tokens)
        text, finish, usage = [], None, None
        with self.client.stream("POST", f"{self.base}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                raise EndpointError(f"{r.status_code} from {self.base}: {r.text[:300]}")
            for event in _events(r.iter_lines()):
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    content, reasoning = _delta_text(choice.get("delta") or {})
                    visible = bool(content or reasoning)
                    clock.chunk(1 if visible else 0, visible)
                    text.append(content)
                    finish = choice.get("finish_reason") or finish
        clock.finish()
        usage = usage or {}
        return clock.sample(
            runner=self.name, profile="endpoint", case=case.name, run=run,
            prompt_tokens=usage.get("prompt_tokens"),
            cached_tokens=(usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
            completion_tokens=usage.get("completion_tokens"), finish_reason=finish,
            text="".join(text), engine={"usage": usage} if usage else {},
        )

    def close(self) -> None:
        self.client.close()


class EndpointChunk:
    """The part of ``runtime.types.Chunk`` that ``bench modes`` reads, rebuilt from SSE events."""

    def __init__(self, text: str = "", reasoning: str = "", finish_reason: str | None = None,
                 decision: dict | None = None, timings: dict | None = None, completion_tokens: int = 0):
        self.text, self.reasoning, self.finish_reason = text, reasoning, finish_reason
        self.decision = Decision.from_dict(decision) if decision else None
        t = timings or {}
        self.timings = _Timings(ttft_ms=float(t.get("ttft_ms") or 0.0),
                                completion_tokens=int(t.get("predicted_n") or completion_tokens))
        self.token_ids: list[int] = []


class _Timings:
    def __init__(self, ttft_ms: float, completion_tokens: int):
        self.ttft_ms, self.completion_tokens = ttft_ms, completion_tokens


class EndpointEngine:
    """``bench modes --url``: the same queries as in process, sent to a served model.

    ``stream(req)`` posts the request (messages, greedy sampling, ``think``, budgets)
    to ``/v1/chat/completions`` and yields chunks with the server's text, reasoning,
    and on the last one its ``decision`` and timings, so accuracy, latency and the
    controller's choices are measured through HTTP exactly as in process.
    """

    def __init__(self, url: str, model: str | None = None, timeout_s: float = 300.0,
                 transport: httpx.BaseTransport | None = None):
        self.base = _base_url(url)
        self.model = model
        self.client = httpx.Client(timeout=timeout_s, transport=transport)

    def stream(self, req):
        body = {"messages": [{"role": m.role, "content": m.content} for m in req.messages],
                "max_tokens": req.max_tokens, "temperature": req.sampling.temperature, "stream": True,
                "stream_options": {"include_usage": True}, "think": req.think}
        if self.model:
            body["model"] = self.model
        if req.reasoning_budget is not None:
            body["reasoning_budget"] = req.reasoning_budget
        last = None
        with self.client.stream("POST", f"{self.base}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                raise EndpointError(f"{r.status_code} from {self.base}: {r.text[:300]}")
            for event in _events(r.iter_lines()):
                for choice in event.get("choices") or []:
                    content, reasoning = _delta_text(choice.get("delta") or {})
                    if choice.get("finish_reason"):
                        last = EndpointChunk(finish_reason=choice["finish_reason"], decision=event.get("decision"),
                                             timings=event.get("timings"))
                    elif content or reasoning:
                        yield EndpointChunk(text=content, reasoning=reasoning)
                if event.get("usage") and last is not None:
                    last.timings.completion_tokens = int(event["usage"].get("completion_tokens") or 0)
        if last is None:
            raise EndpointError(f"the stream from {self.base} ended without a finish_reason")
        yield last

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "EndpointEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
