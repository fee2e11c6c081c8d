"""The soak's traffic: a seeded mix of requests and the way each one is sent.

A ``Shot`` is one request as the client will send it (method, path, raw body,
headers) plus what the client does with it: read it whole, stream it, drop it
after a few events (a disconnect), or give up before the answer (a cancel).
``draw(rng, mix)`` picks the next kind by weight and builds its shot; the same
seed gives the same sequence.

Two dialects: ``thinkling`` uses the server's extensions (think modes,
reasoning budgets, deadlines); ``openai`` sends only what a plain
OpenAI-compatible server (llama.cpp's llama-server) understands.

The hostile bodies are a fixed corpus (every one a way a real client or a
careless script has been seen to break a JSON API) plus seeded mutations of
valid bodies; each must be answered with a 4xx or served, never a 5xx.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
THINK = ("auto", "on", "off", "post")
QUESTIONS = ["What is 17 + 25?", "Translate 'hello' to French.", "Name a primary colour.",
             "What is 9 times 7?", "Give one word that rhymes with cat.", "Is 91 a prime number?"]
PROMPTS = ["The capital of France is", "1, 2, 3, 4,", "Once upon a time", "def add(a, b):"]
JSON = {"Content-Type": "application/json"}


@dataclass
class Shot:
    """One request and how the client treats it."""

    kind: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    stream: bool = False
    drop_after_events: int | None = None  # disconnect after this many SSE events
    give_up_s: float | None = None  # cancel: close the connection after this long, answered or not
    hostile: bool = False

    def describe(self, limit: int = 300) -> dict:
        """What a report shows of the request that caused a failure."""
        text = self.body[:limit].decode("utf-8", "backslashreplace")
        return {"kind": self.kind, "path": self.path, "content_type": self.headers.get("Content-Type"),
                "body_bytes": len(self.body), "body_head": text}


@dataclass(frozen=True)
class Mix:
    """Relative weights of the request kinds, and the token cap of valid requests."""

    chat: float = 3
    chat_stream: float = 3
    completion: float = 1
    completion_stream: float = 1
    deadline: float = 1
    disconnect: float = 1
    cancel: float = 1
    burst: float = 0.3
    hostile: float = 2
    max_tokens: int = 24
    dialect: str = "thinkling"  # or "openai": no thinkling extensions anywhere

    def weights(self) -> dict[str, float]:
        w = {k: getattr(self, k) for k in ("chat", "chat_stream", "completion", "completion_stream", "deadline",
                                           "disconnect", "cancel", "burst", "hostile")}
        if self.dialect == "openai":
            w["deadline"] = 0  # deadline_ms is thinkling's; a plain server would ignore it
        return {k: v for k, v in w.items() if v > 0}


def _dump(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def chat_body(rng: random.Random, mix: Mix, stream: bool) -> dict:
    body = {"messages": [{"role": "user", "content": rng.choice(QUESTIONS)}],
            "max_tokens": rng.randint(1, mix.max_tokens), "temperature": rng.choice([0, 0.7]),
            "seed": rng.randint(0, 1000)}
    if stream:
        body.update(stream=True, stream_options={"include_usage": True})
    if mix.dialect == "thinkling":
        body["think"] = rng.choice(THINK)
        if rng.random() < 0.4:
            body["reasoning_budget"] = rng.choice([0, 4, 16])
    return body


def completion_body(rng: random.Random, mix: Mix, stream: bool) -> dict:
    body = {"prompt": rng.choice(PROMPTS), "max_tokens": rng.randint(1, mix.max_tokens),
            "temperature": rng.choice([0, 0.7])}
    if stream:
        body["stream"] = True
    return body


def _valid(rng: random.Random, mix: Mix) -> tuple[str, dict]:
    if rng.random() < 0.7:
        return CHAT, chat_body(rng, mix, stream=rng.random() < 0.5)
    return COMPLETIONS, completion_body(rng, mix, stream=rng.random() < 0.5)


def fixed_corpus(dialect: str = "thinkling") -> list[Shot]:
    """Hostile requests every server must refuse with a 4xx (or serve) without a 5xx."""
    msgs = [{"role": "user", "content": "hi"}]
    raw: list[tuple[str, bytes, dict[str, str]]] = [
        (CHAT, b"", JSON), (CHAT, b"{", JSON), (CHAT, b"null", JSON), (CHAT, b"[]", JSON), (CHAT, b"42", JSON),
        (CHAT, b'"messages"', JSON), (CHAT, b"[" * 20000 + b"]" * 20000, JSON),
        (CHAT, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', JSON),  # invalid UTF-8
        (CHAT, b'{"messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 2}', JSON),  # lone surrogate
        (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "temperature": NaN}', JSON),
        (CHAT, b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1' + b"0" * 5000 + b"}", JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2}), {"Content-Type": "text/plain"}),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2}), {}),
        (CHAT, _dump({"messages": "hi", "max_tokens": 2}), JSON),
        (CHAT, _dump({"messages": [], "max_tokens": 2}), JSON),
        (CHAT, _dump({"messages": [{"role": "wizard", "content": "hi"}], "max_tokens": 2}), JSON),
        (CHAT, _dump({"messages": [{"content": "hi"}], "max_tokens": 2}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": -1}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": "2"}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2, "temperature": -3}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2, "top_p": 7}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2, "n": 3}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2, "stop": ["x"] * 40}), JSON),
        (CHAT, _dump({"messages": [{"role": "user", "content": "word " * 6000}], "max_tokens": 2}), JSON),
        (CHAT, _dump({"messages": msgs, "max_tokens": 2, "pad": "x" * (2 << 20)}), JSON),  # past the body limit
        (COMPLETIONS, b"{", JSON), (COMPLETIONS, _dump({"prompt": 7, "max_tokens": 2}), JSON),
        (COMPLETIONS, _dump({"max_tokens": 2}), JSON),
        (COMPLETIONS, _dump({"prompt": "hi", "max_tokens": {"a": 1}}), JSON),
    ]
    if dialect == "thinkling":
        raw += [(CHAT, _dump({"messages": msgs, "max_tokens": 2, "think": "maybe"}), JSON),
                (CHAT, _dump({"messages": msgs, "max_tokens": 2, "reasoning_budget": -4}), JSON),
                (CHAT, _dump({"messages": msgs, "max_tokens": 2, "deadline_ms": 0}), JSON),
                (CHAT, _dump({"messages": msgs, "max_tokens": 2, "model": "no-such-model"}), JSON)]
    return [Shot("hostile", path, body, headers, hostile=True) for path, body, headers in raw]


_ODD_VALUES = [None, -1, 0, 2, "x", "", [], {}, [None], {"a": []}, 1e308, -1e308, True, "\u202e\U0001f600" * 8,
               2 ** 63, "\x00"]


def mutated(rng: random.Random, mix: Mix) -> Shot:
    """A valid body broken one seeded way: a field dropped or given an odd value,
    the bytes cut short, or a byte flipped."""
    path, body = _valid(rng, mix)
    body["max_tokens"] = min(body.get("max_tokens", 2), 4)
    how = rng.choice(["drop", "retype", "retype", "truncate", "flip"])
    if how == "drop":
        body.pop(rng.choice(sorted(body)))
    elif how == "retype":
        key = rng.choice(sorted(body))
        if key != "max_tokens":  # an odd max_tokens (2**63) would be clamped to the cap, not refused
            body[key] = rng.choice(_ODD_VALUES)
    data = _dump(body)
    if how == "truncate":
        data = data[: rng.randrange(len(data))]
    elif how == "flip":
        i = rng.randrange(len(data))
        data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    return Shot("hostile", path, data, hostile=True)


def draw(rng: random.Random, mix: Mix, corpus: list[Shot]) -> Shot:
    """The next request of the mix (``burst`` is returned as a marker; the runner fans it out)."""
    weights = mix.weights()
    kind = rng.choices(list(weights), weights=list(weights.values()))[0]
    if kind in ("chat", "chat_stream"):
        stream = kind == "chat_stream"
        return Shot(kind, CHAT, _dump(chat_body(rng, mix, stream)), stream=stream)
    if kind in ("completion", "completion_stream"):
        stream = kind == "completion_stream"
        return Shot(kind, COMPLETIONS, _dump(completion_body(rng, mix, stream)), stream=stream)
    if kind == "deadline":  # cut by the server: finish_reason "length" once the budget is spent
        body = chat_body(rng, mix, stream=rng.random() < 0.5)
        body.update(max_tokens=mix.max_tokens, deadline_ms=rng.choice([1, 50, 200, 600]))
        return Shot(kind, CHAT, _dump(body), stream=bool(body.get("stream")))
    if kind == "disconnect":
        body = chat_body(rng, mix, stream=True)
        body["max_tokens"] = mix.max_tokens
        return Shot(kind, CHAT, _dump(body), stream=True, drop_after_events=rng.randint(1, 3))
    if kind == "cancel":
        body = chat_body(rng, mix, stream=False)
        body["max_tokens"] = mix.max_tokens
        return Shot(kind, CHAT, _dump(body), give_up_s=rng.choice([0.05, 0.3, 1.0]))
    if kind == "burst":
        return Shot("burst", CHAT, b"")
    if rng.random() < 0.5:
        return rng.choice(corpus)
    return mutated(rng, mix)


def burst(rng: random.Random, mix: Mix, size: int) -> list[Shot]:
    """``size`` small requests sent at once: past the server's queue they must be 429s."""
    shots = []
    for _ in range(size):
        body = chat_body(rng, mix, stream=False)
        body["max_tokens"] = min(body["max_tokens"], 8)
        shots.append(Shot("burst", CHAT, _dump(body)))
    return shots
