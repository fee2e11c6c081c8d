"""Per-request event buffers and their expiry.

Events: ``reasoning`` and ``answer`` deltas, then exactly one terminal event
(``done``, ``error`` or ``cancelled``). Buffered deltas of the same type are
merged, so a slow poller gets a few large deltas rather than one per token.

Expiry policy (bounded memory):

- a request is forgotten as soon as ``poll`` has returned its terminal event;
- a finished request that nobody polls is forgotten ``ttl_s`` after it finished
  (default 120 s), or earlier when more than ``max_finished`` (default 32)
  finished requests are kept (oldest first);
- running and queued requests never expire (the engine's queue bounds them).

The table is not thread-safe by itself: the bridge holds its lock around it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field

from thinkling.runtime.engine import Handle
from thinkling.runtime.thinking import Decision, decision_dict
from thinkling.runtime.types import Chunk, Timings

TERMINAL = frozenset({"done", "error", "cancelled"})
DELTAS = frozenset({"reasoning", "answer"})


def result_fields(model: str, text: str, reasoning: str, finish_reason: str, timings: Timings | None,
                  decision: Decision | None) -> dict:
    """The fields of a ``done`` event, also returned by ``complete``."""
    return {"model": model, "text": text, "reasoning": reasoning, "finish_reason": finish_reason,
            "timings": (timings or Timings()).to_dict(), "decision": decision_dict(decision)}


@dataclass
class Record:
    """One submitted request as the bridge sees it."""

    id: str
    handle: Handle
    model: str
    created: float = field(default_factory=time.monotonic)
    buffer: list[dict] = field(default_factory=list)
    finished_at: float | None = None
    cancel_reason: str | None = None  # who cancelled: client, unload, memory_pressure, shutdown
    # written by the pump thread only
    _text: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _decision: Decision | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def state(self) -> str:
        if self.finished:
            return "finished"
        return "running" if self.handle.started.is_set() else "queued"

    def events_for(self, chunk: Chunk) -> list[dict]:
        """Translate one runtime chunk into bridge events (pump thread)."""
        out = []
        if chunk.reasoning:
            self._reasoning.append(chunk.reasoning)
            out.append({"type": "reasoning", "request_id": self.id, "text": chunk.reasoning})
        if chunk.text:
            self._text.append(chunk.text)
            out.append({"type": "answer", "request_id": self.id, "text": chunk.text})
        self._decision = chunk.decision or self._decision
        if chunk.finish_reason is not None:
            out.append(self.terminal(chunk))
        return out

    def terminal(self, last: Chunk) -> dict:
        if last.finish_reason == "cancelled":
            return {"type": "cancelled", "request_id": self.id, "reason": self.cancel_reason or "client",
                    "text": "".join(self._text), "reasoning": "".join(self._reasoning),
                    "timings": (last.timings or Timings()).to_dict()}
        return {"type": "done", "request_id": self.id, **self.result(last)}

    def result(self, last: Chunk) -> dict:
        """The joined generation so far, ended by ``last``."""
        return result_fields(self.model, "".join(self._text), "".join(self._reasoning), last.finish_reason,
                             last.timings, self._decision)

    def add(self, event: dict) -> None:
        """Buffer ``event`` for ``poll``, merging it into a same-type delta before it."""
        last = self.buffer[-1] if self.buffer else None
        if last is not None and event["type"] in DELTAS and last["type"] == event["type"]:
            last["text"] += event["text"]
        else:
            self.buffer.append(dict(event))

    def take(self) -> list[dict]:
        events, self.buffer = self.buffer, []
        return events


class RequestTable:
    """Records by id, with the expiry policy in the module docstring."""

    def __init__(self, ttl_s: float = 120.0, max_finished: int = 32):
        self.ttl_s, self.max_finished = ttl_s, max_finished
        self._records: OrderedDict[str, Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def add(self, rec: Record) -> None:
        self._records[rec.id] = rec

    def get(self, request_id: str) -> Record | None:
        return self._records.get(request_id)

    def remove(self, request_id: str) -> None:
        self._records.pop(request_id, None)

    def active(self) -> list[Record]:
        return [r for r in self._records.values() if not r.finished]

    def buffered_events(self) -> int:
        return sum(len(r.buffer) for r in self._records.values())

    def sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        finished = [r for r in self._records.values() if r.finished]
        finished.sort(key=lambda r: r.finished_at)
        excess = len(finished) - self.max_finished
        for i, r in enumerate(finished):
            if i < excess or now - r.finished_at > self.ttl_s:
                del self._records[r.id]

    def drop_finished(self) -> int:
        """Forget every finished request (memory pressure); returns how many."""
        gone = [r.id for r in self._records.values() if r.finished]
        for rid in gone:
            del self._records[rid]
        return len(gone)

    def clear(self) -> None:
        self._records.clear()
