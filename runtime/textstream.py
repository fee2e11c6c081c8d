"""Streaming text helpers: incremental UTF-8 detokenization, stop strings and
the reasoning/answer split. All work on deltas and hold back only the few
characters that could still become a multi-byte character, a stop string or a
tag, so streamed output never has to be retracted.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable


def partial_suffix_len(text: str, patterns: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a pattern."""
    best = 0
    for pat in patterns:
        for n in range(min(len(pat) - 1, len(text)), best, -1):
            if text.endswith(pat[:n]):
                best = n
                break
    return best


class Detokenizer:
    """Turns token ids into text deltas without splitting a multi-byte character.

    Token pieces are raw bytes (a byte-level BPE token can be half of a UTF-8
    sequence); the standard library's incremental UTF-8 decoder keeps the
    incomplete tail until the next piece completes it.
    """

    def __init__(self, token_bytes: Callable[[int], bytes]):
        self._token_bytes = token_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def add(self, token_id: int) -> str:
        return self._decoder.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop strings across deltas. ``feed`` returns the text that is safe
    to emit and whether a stop string was hit (the stop string itself is never
    emitted)."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self._pending = ""

    def feed(self, delta: str) -> tuple[str, bool]:
        if not self.stops:
            return delta, False
        text = self._pending + delta
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self._pending = ""
            return text[: min(hits)], True
        hold = partial_suffix_len(text, self.stops)
        self._pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold], False

    def flush(self) -> str:
        out, self._pending = self._pending, ""
        return out


class ReasoningSplitter:
    """Splits generated text into ``(answer_delta, reasoning_delta)``.

    Text between ``open_tag`` and ``close_tag`` is reasoning, the rest answer;
    this covers pre-thinking (``<think>..</think>answer``) and post-thinking
    (``answer<think>..</think>``). ``start_in_reasoning`` is for templates that
    open the tag in the prompt. With no tags, everything is answer.
    """

    def __init__(self, open_tag: str | None = "<think>", close_tag: str | None = "</think>",
                 start_in_reasoning: bool = False):
        self.open_tag = open_tag or ""
        self.close_tag = close_tag or ""
        self.in_reasoning = start_in_reasoning
        self.reasoning_closed = False
        self._pending = ""

    @property
    def enabled(self) -> bool:
        return bool(self.open_tag and self.close_tag)

    @property
    def held(self) -> str:
        """Text held back because it may be the start of a tag."""
        return self._pending

    def feed(self, delta: str) -> tuple[str, str]:
        if not self.enabled:
            return delta, ""
        text = self._pending + delta
        self._pending = ""
        answer, reasoning = [], []
        while text:
            tag = self.close_tag if self.in_reasoning else self.open_tag
            idx = text.find(tag)
            if idx >= 0:
                (reasoning if self.in_reasoning else answer).append(text[:idx])
                text = text[idx + len(tag):]
                if self.in_reasoning:
                    self.reasoning_closed = True
                self.in_reasoning = not self.in_reasoning
                continue
            hold = partial_suffix_len(text, [tag])
            (reasoning if self.in_reasoning else answer).append(text[: len(text) - hold])
            self._pending = text[len(text) - hold:] if hold else ""
            break
        return "".join(answer), "".join(reasoning)

    def flush(self) -> tuple[str, str]:
        rest, self._pending = self._pending, ""
        return ("", rest) if self.in_reasoning else (rest, "")


def split_reasoning(text: str, open_tag: str = "<think>", close_tag: str = "</think>",
                    start_in_reasoning: bool = False) -> tuple[str, str]:
    """Non-streaming split: returns ``(answer, reasoning)``."""
    splitter = ReasoningSplitter(open_tag, close_tag, start_in_reasoning)
    a, r = splitter.feed(text)
    fa, fr = splitter.flush()
    return (a + fa).strip(), (r + fr).strip()
