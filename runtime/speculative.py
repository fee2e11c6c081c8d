"""Prompt-lookup ("n-gram") drafting for speculative decoding, without a draft model.

Decode on a small model is bound by memory bandwidth: one step reads every
weight once whether it scores one token or eight. So the generation loop asks
``NgramDrafter`` for a guess of the next few tokens — what followed the most
recent earlier occurrence of the text's last few tokens, in the prompt or the
output — scores the sampled token and the guess in one batched evaluation,
keeps the guessed tokens the model itself would have chosen, and rolls the KV
cache back past the rest. Reasoning chains repeat the question's numbers and
each step's result, and rewrites repeat their source, which is what this
drafts from; on free text a guess rarely matches and the draft length backs off.

Only greedy decoding (temperature 0) drafts: there the kept tokens are the
ones plain decoding would have produced. With sampling an exact acceptance
rule would need the draft's own distribution, which a lookup does not have.

Hand-written: llama.cpp's own lookup decoding lives in its C++ ``common``
library, which llama-cpp-python does not bind, and its Python ``LlamaPromptLookupDecoding``
draws from the prompt only through the high-level ``Llama`` class this runtime
does not use.
"""

from __future__ import annotations

from dataclasses import dataclass

SPECULATIVE_MODES = ("off", "ngram")


@dataclass(frozen=True)
class SpeculativeConfig:
    """How the loop drafts. ``max_draft`` caps one guess; ``min_match`` is the
    shortest suffix match trusted; ``max_ngram`` the longest suffix tried;
    ``prior_accept`` and ``prior_cost`` are the starting guesses of the
    per-position acceptance rate and of an extra scored position's cost
    relative to a one-token pass, until this generation has measured both."""

    max_draft: int = 8
    min_match: int = 2
    max_ngram: int = 4
    prior_accept: float = 0.6
    prior_cost: float = 0.35
    decay: float = 0.8  # weight of the past in the running estimates


def speculative_config(mode: str | None) -> SpeculativeConfig | None:
    """The drafting a request's ``speculative`` field asks for (None: off)."""
    return SpeculativeConfig() if mode == "ngram" else None


class NgramDrafter:
    """Index of every n-gram (``min_match``..``max_ngram`` tokens) of the history
    -> the position right after its latest occurrence; drafts from it.

    ``history`` is the generation loop's own token list (prompt included),
    read, never written; tokens appended to it are indexed on the next
    ``propose``, so a lookup costs one dict access per n-gram length.

    How many tokens to guess is a small cost model, because on a large
    vocabulary scoring is not free: each extra position of a pass computes the
    full output head (Gemma 3 270M on 2 cores: ~23 ms for one token, ~+8 ms per
    extra position). With ``p`` the measured chance that a guessed position is
    kept and ``c`` an extra position's measured cost relative to a one-token
    pass, a guess of ``k`` tokens yields ``(1 - p**(k+1)) / (1 - p)`` tokens
    for ``1 + c*k`` passes' time; the drafter guesses the ``k`` (0 = none) with
    the best ratio. Misses lower ``p`` and so shorten or stop the guesses on
    free text; the estimates decay back toward the priors, so drafting is
    tried again later.
    """

    def __init__(self, config: SpeculativeConfig, history: list[int]):
        self.config = config
        self._history = history
        self._index: dict[tuple[int, ...], int] = {}
        self._seen = 0  # positions indexed so far
        # running (decayed) counts: kept positions / scored guessed positions
        self._kept, self._tried = config.prior_accept * 2, 2.0
        self._single_s: float | None = None  # seconds of a one-token pass
        self._extra_s: float | None = None  # seconds per extra position of a pass
        self.drafted = 0
        self.accepted = 0

    def _sync(self) -> None:
        h, lo, hi = self._history, self.config.min_match, self.config.max_ngram
        for i in range(max(self._seen, 1), len(h)):
            # the n-grams ending just before position i: their continuation h[i] is known
            for n in range(lo, min(hi, i) + 1):
                self._index[tuple(h[i - n:i])] = i
        self._seen = len(h)

    @property
    def accept_rate(self) -> float:
        return self._kept / self._tried

    @property
    def extra_cost(self) -> float:
        if self._single_s and self._extra_s is not None:
            return max(self._extra_s / self._single_s, 0.01)
        return self.config.prior_cost

    def best_length(self, available: int) -> int:
        """The guess length with the best expected tokens per unit of time (0: do not guess)."""
        p, c = min(self.accept_rate, 0.999), self.extra_cost
        best_k, best = 0, 1.0
        for k in range(1, available + 1):
            rate = (1 - p ** (k + 1)) / (1 - p) / (1 + c * k)
            if rate > best:
                best_k, best = k, rate
        return best_k

    def propose(self, limit: int) -> list[int]:
        """The guess for the next tokens (at most ``limit``), or [] when there is no
        trusted match or guessing is not expected to pay."""
        limit = min(limit, self.config.max_draft)
        if limit <= 0:
            return []
        self._sync()
        h = self._history
        for n in range(min(self.config.max_ngram, len(h) - 1), self.config.min_match - 1, -1):
            pos = self._index.get(tuple(h[-n:]))
            if pos is not None:
                guess = h[pos:pos + limit]
                k = self.best_length(len(guess))
                if k == 0:  # declined: drift back toward the prior so it is tried again later
                    self._relax()
                return guess[:k]
        return []

    def _relax(self) -> None:
        d = self.config.decay
        self._kept = d * self._kept + (1 - d) * self.config.prior_accept * 2
        self._tried = d * self._tried + (1 - d) * 2

    def observe_pass(self, n_tokens: int, seconds: float) -> None:
        """The time of one decode pass that scored ``n_tokens`` positions."""
        d = self.config.decay
        if n_tokens == 1:
            self._single_s = seconds if self._single_s is None else d * self._single_s + (1 - d) * seconds
        elif self._single_s is not None:
            extra = max(seconds - self._single_s, 0.0) / (n_tokens - 1)
            self._extra_s = extra if self._extra_s is None else d * self._extra_s + (1 - d) * extra

    def feedback(self, drafted: int, accepted: int) -> None:
        """A guess of ``drafted`` tokens ended with ``accepted`` kept."""
        self.drafted += drafted
        self.accepted += accepted
        d = self.config.decay
        tried = accepted + (1 if accepted < drafted else 0)  # positions whose fate was decided
        self._kept = d * self._kept + accepted
        self._tried = d * self._tried + tried
