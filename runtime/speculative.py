"""Prompt-lookup ("n-gram") drafting for speculative decoding, without a draft model.

One decode pass reads every weight once whether it scores one token or eight,
so scoring several positions costs less than several passes (how much less is
measured, below: on a large vocabulary the output head makes each extra
position far from free). So the generation loop asks
``NgramDrafter`` for a guess of the next few tokens — what followed the most
recent earlier occurrence of the text's last few tokens, in the prompt or the
output — scores the sampled token and the guess in one batched evaluation,
keeps the guessed tokens the model itself would have chosen, and rolls the KV
cache back past the rest. Reasoning chains repeat the question's numbers and
each step's result, and rewrites repeat their source, which is what this
drafts from; where guesses miss, or cost more than they save, the drafter
guesses less or not at all.

Only greedy decoding (temperature 0) drafts: there the kept tokens are the
ones plain decoding would have produced. With sampling an exact acceptance
rule would need the draft's own distribution, which a lookup does not have.

Hand-written: llama.cpp's own lookup decoding lives in its C++ ``common``
library, which llama-cpp-python does not bind, and its Python ``LlamaPromptLookupDecoding``
draws from the prompt only through the high-level ``Llama`` class this runtime
does not use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    explore_every: int = 16  # while the throughput guard says no, still guess once per this many steps


@dataclass
class DraftCosts:
    """What drafting costs on this model and device, measured by every
    generation that drafts and kept across them (one per loaded model: the
    thinking controller owns it, the engine's single worker is its only user).

    ``single_s``: backend seconds of a one-token pass; ``extra_s``: backend
    seconds per extra scored position; ``per_token_s``: wall seconds per
    produced token after "plain" and after "guess" passes, everything included.
    """

    single_s: float | None = None
    extra_s: float | None = None
    per_token_s: dict = field(default_factory=dict)


_PRIOR_WEIGHT = 2.0  # how many observed positions the prior acceptance rate is worth


def _ema(old: float | None, new: float, decay: float) -> float:
    return new if old is None else decay * old + (1 - decay) * new


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
    full output head (what that costs on Gemma 3 270M: docs/runtime.md,
    "Speculative decoding"). With ``p`` the measured chance that a guessed position is
    kept and ``c`` an extra position's measured cost relative to a one-token
    pass, a guess of ``k`` tokens yields ``(1 - p**(k+1)) / (1 - p)`` tokens
    for ``1 + c*k`` passes' time; the drafter guesses the ``k`` (0 = none) with
    the best ratio. Misses lower ``p`` and so shorten or stop the guesses on
    free text; the estimates decay back toward the priors, so drafting is
    tried again later.
    """

    def __init__(self, config: SpeculativeConfig, history: list[int], costs: DraftCosts | None = None):
        self.config = config
        self.costs = costs if costs is not None else DraftCosts()
        self._history = history
        self._index: dict[tuple[int, ...], int] = {}
        self._seen = 0  # positions indexed so far
        # running (decayed) counts: kept positions / scored guessed positions
        self._kept, self._tried = config.prior_accept * _PRIOR_WEIGHT, _PRIOR_WEIGHT
        self._last: tuple[str, float, int] | None = None  # (kind, start, history length) of the last pass
        self._declined = 0
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
        c = self.costs
        if c.single_s and c.extra_s is not None:
            return max(c.extra_s / c.single_s, 0.01)
        return self.config.prior_cost

    @property
    def guessing_pays(self) -> bool:
        """False once guessing passes have measurably produced tokens slower than plain ones.

        The cost model sees only the backend's pass times; on a tiny model the
        per-token work around them (sampling, detokenizing, the loop) can dominate,
        which only an end-to-end measurement catches (docs/runtime.md)."""
        plain, guess = self.costs.per_token_s.get("plain"), self.costs.per_token_s.get("guess")
        return plain is None or guess is None or guess < plain

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
        if not self.guessing_pays:  # checked first: the cheapest way to say no
            self._declined += 1
            if self._declined % self.config.explore_every:
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
        self._kept = _ema(self._kept, self.config.prior_accept * _PRIOR_WEIGHT, d)
        self._tried = _ema(self._tried, _PRIOR_WEIGHT, d)

    def begin_pass(self, n_tokens: int, now: float) -> None:
        """A decode pass scoring ``n_tokens`` positions starts at ``now``: the time
        since the previous pass began, per token produced since, is that pass's cost."""
        produced = len(self._history)
        if self._last is not None:
            kind, start, before = self._last
            if produced > before:
                spt = (now - start) / (produced - before)
                self.costs.per_token_s[kind] = _ema(self.costs.per_token_s.get(kind), spt, self.config.decay)
        self._last = ("guess" if n_tokens > 1 else "plain", now, produced)

    def observe_pass(self, n_tokens: int, seconds: float) -> None:
        """The backend time of one decode pass that scored ``n_tokens`` positions."""
        d, c = self.config.decay, self.costs
        if n_tokens == 1:
            c.single_s = _ema(c.single_s, seconds, d)
        elif c.single_s is not None:
            c.extra_s = _ema(c.extra_s, max(seconds - c.single_s, 0.0) / (n_tokens - 1), d)

    def feedback(self, drafted: int, accepted: int) -> None:
        """A guess of ``drafted`` tokens ended with ``accepted`` kept."""
        self.drafted += drafted
        self.accepted += accepted
        d = self.config.decay
        tried = accepted + (1 if accepted < drafted else 0)  # positions whose fate was decided
        self._kept = d * self._kept + accepted
        self._tried = d * self._tried + tried
