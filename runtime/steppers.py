"""How the generation loop gets the next logits: plainly, or by speculative guesses.

``stream_generate`` picks one stepper before its loop (as mlx-lm picks
``generate_step`` or ``speculative_generate_step``) and then only calls it:

- ``verify(tok)`` right after a token is sampled (a guess in flight ends where
  plain decoding differs from it);
- ``advance(tok, remaining)`` once ``tok`` is kept: the logits after it;
- ``plain(tok)`` when the loop is about to insert forced text: the cache is
  brought back to exactly the history (no guess open) and ``tok`` evaluated;
- ``close()`` when the generation ends.

Both steppers leave the KV cache holding the loop's history after ``advance``,
or with a guess open, the history then the guess's unverified rest.
"""

from __future__ import annotations

import time

from .backends.base import Backend
from .speculative import DraftCosts, NgramDrafter, SpeculativeConfig
from .types import Timings


class PlainStepper:
    """One backend pass per token."""

    def __init__(self, backend: Backend):
        self.backend = backend

    def verify(self, tok: int) -> None:
        pass

    def advance(self, tok: int, remaining: int):
        return self.backend.eval([tok])

    def plain(self, tok: int):
        return self.backend.eval([tok])

    def close(self) -> None:
        pass


class _Guess:
    """A draft in flight: guessed tokens scored in one pass, verified one by one.

    ``rows[i]`` are the logits after the i-th token of the pass (the pass is the
    last sampled token followed by the guess), a view valid until the next
    backend call.
    """

    def __init__(self, tokens: list[int], rows):
        self.tokens, self.rows = tokens, rows
        self.kept = 0

    def next_logits(self):
        return self.rows[self.kept]

    def verify(self, tok: int) -> bool:
        """Whether the token plain decoding produced here is the guessed one."""
        if self.kept < len(self.tokens) and tok == self.tokens[self.kept]:
            self.kept += 1
            return True
        return False

    @property
    def open(self) -> bool:
        return self.kept < len(self.tokens)


class SpeculativeStepper:
    """Scores the sampled token and the drafter's guess in one ``eval_many`` pass;
    each guessed token is kept only if sampling picks it, so the output is plain
    decoding's. ``history`` is the loop's token list (prompt included), read only."""

    def __init__(self, backend: Backend, drafter: NgramDrafter, history: list[int], timings: Timings):
        self.backend, self.drafter, self.history, self.timings = backend, drafter, history, timings
        self.guess: _Guess | None = None

    def _end(self, keep: int) -> None:
        """Close the guess: count what was kept, tell the drafter, and roll the KV
        cache back to its first ``keep`` positions (dropping unverified guesses)."""
        guess, self.guess = self.guess, None
        self.timings.accepted_tokens += guess.kept
        self.drafter.feedback(len(guess.tokens), guess.kept)
        self.backend.truncate(keep)

    def verify(self, tok: int) -> None:
        if self.guess is not None and not self.guess.verify(tok):  # plain decoding differs here
            self._end(len(self.history))

    def advance(self, tok: int, remaining: int):
        if self.guess is not None:  # the position after ``tok`` was scored in the guess's pass already
            logits = self.guess.next_logits()
            if not self.guess.open:  # every guessed token was kept: the cache holds exactly the history
                self._end(len(self.history))
            return logits
        tokens = self.drafter.propose(min(remaining - 1, self.backend.n_ctx - len(self.history) - 1))
        t_pass = time.perf_counter()
        self.drafter.begin_pass(1 + len(tokens), t_pass)
        if tokens:
            self.timings.drafted_tokens += len(tokens)
            self.guess = _Guess(tokens, self.backend.eval_many([tok] + tokens))
            logits = self.guess.next_logits()
        else:
            logits = self.backend.eval([tok])
        self.drafter.observe_pass(1 + len(tokens), time.perf_counter() - t_pass)
        return logits

    def plain(self, tok: int):
        if self.guess is not None:  # back to the plain state: the cache holds history minus ``tok``
            self._end(len(self.history) - 1)
        return self.backend.eval([tok])

    def close(self) -> None:
        if self.guess is not None:
            self._end(len(self.history))


def pick_stepper(backend: Backend, speculative: SpeculativeConfig | None, greedy: bool, grammar: bool,
                 history: list[int], timings: Timings, costs: DraftCosts | None):
    """The speculative stepper when drafting is asked for and can be exact: greedy
    decoding, no grammar (it checks every token as it is sampled), and a backend
    that scores several positions in one pass; otherwise the plain one."""
    if speculative is None or not greedy or grammar or not backend.capabilities.score_many:
        return PlainStepper(backend)
    return SpeculativeStepper(backend, NgramDrafter(speculative, history, costs), history, timings)
