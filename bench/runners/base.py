"""What every runner returns (``Sample``) and how it times a stream (``StreamClock``).

All runners time from outside the thing they measure, with the same clock and
the same definitions, so thinkling, the raw llama-cpp-python baseline and a
remote endpoint are compared like for like:

- ``ttft_ms``: request start -> first chunk with visible text or reasoning
  (what a user sees; a token held back by the detokenizer or a stop-string
  matcher is not visible yet).
- ``first_token_ms``: request start -> first chunk carrying a token, visible or not.
- ``short_answer_ms``: request start -> the chunk carrying the 16th generated
  token, or the end of the stream if the answer is shorter: the time to a
  short direct answer.
- ``e2e_ms``: request start -> the end of the stream.
- ``prefill_tok_s``: evaluated prompt tokens / ``first_token_ms`` (a lower
  bound: it includes sampling the first token).
- ``decode_tok_s``: (completion tokens - 1) / (end - first token).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Protocol

from ..prompts import PromptCase

SHORT_ANSWER_TOKENS = 16


@dataclass
class Sample:
    """One timed run of one prompt class on one runner."""

    runner: str
    profile: str
    prompt_class: str
    run: int
    prompt_tokens: int | None
    cached_tokens: int | None
    completion_tokens: int
    ttft_ms: float | None
    first_token_ms: float | None
    short_answer_ms: float
    e2e_ms: float
    prefill_tok_s: float | None
    decode_tok_s: float | None
    finish_reason: str | None
    text: str = ""
    engine: dict = field(default_factory=dict)  # the runner's own timings, for reference

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class StreamClock:
    """Records when a stream's chunks arrive; ``now`` is injectable for tests."""

    def __init__(self, short_tokens: int = SHORT_ANSWER_TOKENS,
                 now: Callable[[], float] = time.perf_counter):
        self._now = now
        self.short_tokens = short_tokens
        self.t0 = now()
        self.first_token: float | None = None
        self.first_visible: float | None = None
        self.short_at: float | None = None
        self.end: float | None = None
        self.tokens = 0

    def chunk(self, n_tokens: int, visible: bool) -> None:
        """A chunk arrived carrying ``n_tokens`` tokens; ``visible`` if it has text."""
        t = self._now()
        if n_tokens and self.first_token is None:
            self.first_token = t
        if visible and self.first_visible is None:
            self.first_visible = t
            if self.first_token is None:
                self.first_token = t
        self.tokens += n_tokens
        if self.short_at is None and self.tokens >= self.short_tokens:
            self.short_at = t

    def finish(self) -> None:
        self.end = self._now()
        if self.short_at is None:
            self.short_at = self.end

    def _ms(self, t: float | None) -> float | None:
        return None if t is None else (t - self.t0) * 1000

    def sample(self, *, runner: str, profile: str, case: str, run: int, prompt_tokens: int | None,
               cached_tokens: int | None, completion_tokens: int | None = None,
               finish_reason: str | None = None, text: str = "", engine: dict | None = None) -> Sample:
        """The finished record. ``completion_tokens`` overrides the counted
        tokens when the runner knows the exact number."""
        assert self.end is not None, "finish() first"
        n = self.tokens if completion_tokens is None else completion_tokens
        first = self._ms(self.first_token)
        evaluated = None if prompt_tokens is None else prompt_tokens - (cached_tokens or 0)
        prefill = evaluated / (first / 1000) if evaluated and first else None
        decode = None
        if self.first_token is not None and n > 1 and self.end > self.first_token:
            decode = (n - 1) / (self.end - self.first_token)
        return Sample(runner=runner, profile=profile, prompt_class=case, run=run,
                      prompt_tokens=prompt_tokens, cached_tokens=cached_tokens, completion_tokens=n,
                      ttft_ms=self._ms(self.first_visible), first_token_ms=first,
                      short_answer_ms=self._ms(self.short_at), e2e_ms=self._ms(self.end),
                      prefill_tok_s=prefill, decode_tok_s=decode, finish_reason=finish_reason,
                      text=text, engine=engine or {})


class Runner(Protocol):
    """A thing that can run a prompt case and time it."""

    name: str
    load_ms: float | None

    def run(self, case: PromptCase, run: int) -> Sample: ...

    def close(self) -> None: ...
