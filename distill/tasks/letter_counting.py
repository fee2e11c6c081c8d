"""letter_counting (reasoning-gym): how many times a letter appears in a span of words.

Two teacher paths:
  spell    every word spelled out letter by letter with its count, then the sum
           (``Harold: H-a-r-o-l-d: 0``);
  matches  only the words holding the letter, each with its count, then the sum.
The filter re-counts every line against the question's words: a word spelled
wrong, a count off, a word with the letter left out, or a sum off is rejected.
"""

from __future__ import annotations

import random
import re

from thinkling.distill.tasks.base import Chain, Problem
from thinkling.distill.tasks.rg import ReasoningGymTask

_WORD = re.compile(r"^(\w+): (?:([\w-]+): )?(\d+)$")
_SUM = re.compile(r"^((?:\d+ \+ )*\d+) = (\d+)$")


def _sum_line(counts: list[int]) -> str:
    return f"{' + '.join(map(str, counts))} = {sum(counts)}"


class LetterCounting(ReasoningGymTask):
    name = "letter_counting"
    dataset = "letter_counting"
    check = "number"
    # short spans: every word becomes a line of the spelled chain
    config = {"min_words": 3, "max_words": 7}
    paths = ("spell", "matches")

    def level(self, entry: dict) -> str:
        return f"{entry['metadata']['span_length']} words"

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` of the two paths, spelled first."""
        letter, span = problem.meta["target_letter"], problem.meta["span"]
        spell = [f"{w}: {'-'.join(w)}: {w.lower().count(letter)}" for w in span]
        spell.append(_sum_line([w.lower().count(letter) for w in span]))
        hits = [w for w in span if letter in w.lower()]
        matches = [f"{w}: {w.lower().count(letter)}" for w in hits]
        matches.append(_sum_line([w.lower().count(letter) for w in hits] or [0]))
        return [Chain("spell", spell, problem.answer), Chain("matches", matches, problem.answer)][:k]

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None if every line re-counts right and the sum is the answer; else why not."""
        letter, span = problem.meta["target_letter"], problem.meta["span"]
        if not chain.steps:
            return "empty chain"
        counts, named = [], []
        for k, line in enumerate(chain.steps[:-1]):
            m = _WORD.match(line)
            if m is None:
                return f"malformed line {k + 1}"
            word, spelled, count = m[1], m[2], int(m[3])
            if word not in span:
                return f"word not in the text, line {k + 1}: {word!r}"
            if spelled is not None and spelled.replace("-", "") != word:
                return f"misspelled word, line {k + 1}: {word!r}"
            if count != word.lower().count(letter):
                return f"wrong count, line {k + 1}: {word!r}"
            counts.append(count)
            named.append(word)
        # every word in order, or every word holding the letter in order: nothing left out
        if named != list(span) and named != [w for w in span if letter in w.lower()]:
            return "a word is left out or out of order"
        m = _SUM.match(chain.steps[-1])
        if m is None:
            return "malformed sum line"
        terms = [int(t) for t in m[1].split(" + ")]
        if terms != (counts or [0]) or sum(terms) != int(m[2]):
            return "wrong sum"
        if m[2] != chain.answer.strip():
            return "answer differs from the sum"
        if not self.score(problem, chain.answer):
            return "wrong answer"
        return None


TASK = LetterCounting()
