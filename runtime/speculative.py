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
    shortest suffix match trusted; ``max_ngram`` the longest suffix tried."""

    max_draft: int = 8
    min_match: int = 2
    max_ngram: int = 4
    start_draft: int = 4


def speculative_config(mode: str | None) -> SpeculativeConfig | None:
    """The drafting a request's ``speculative`` field asks for (None: off)."""
    return SpeculativeConfig() if mode == "ngram" else None


class NgramDrafter:
    """Index of every n-gram (``min_match``..``max_ngram`` tokens) of the history
    -> the position right after its latest occurrence; drafts from it.

    ``history`` is the generation loop's own token list (prompt included),
    read, never written; tokens appended to it are indexed on the next
    ``propose``, so a lookup costs one dict access per n-gram length.
    """

    def __init__(self, config: SpeculativeConfig, history: list[int]):
        self.config = config
        self._history = history
        self._index: dict[tuple[int, ...], int] = {}
        self._seen = 0  # positions indexed so far
        self.draft_len = config.start_draft
        self._cooldown = 0  # steps to skip drafting after a guess that missed entirely
        self._misses = 0
        self.drafted = 0
        self.accepted = 0

    def _sync(self) -> None:
        h, lo, hi = self._history, self.config.min_match, self.config.max_ngram
        for i in range(max(self._seen, 1), len(h)):
            # the n-grams ending just before position i: their continuation h[i] is known
            for n in range(lo, min(hi, i) + 1):
                self._index[tuple(h[i - n:i])] = i
        self._seen = len(h)

    def propose(self, limit: int) -> list[int]:
        """Up to ``min(limit, draft_len)`` tokens, or [] when there is no trusted match."""
        if self._cooldown > 0:
            self._cooldown -= 1
            return []
        k = min(limit, self.draft_len)
        if k <= 0:
            return []
        self._sync()
        h = self._history
        for n in range(min(self.config.max_ngram, len(h) - 1), self.config.min_match - 1, -1):
            pos = self._index.get(tuple(h[-n:]))
            if pos is not None:
                return h[pos:pos + k]
        return []

    def feedback(self, drafted: int, accepted: int) -> None:
        """Grow the draft after a fully accepted guess, shrink it after a miss;
        after repeated guesses that miss entirely, pause drafting for a while
        so free text is not slowed by batches it throws away."""
        self.drafted += drafted
        self.accepted += accepted
        if accepted == drafted:
            self.draft_len = min(self.config.max_draft, self.draft_len * 2)
            self._misses = 0
        else:
            self.draft_len = max(1, accepted + 1)
            if accepted == 0:
                self._misses += 1
                self._cooldown = min(16, 2 ** self._misses)
            else:
                self._misses = 0
