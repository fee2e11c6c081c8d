"""family_relationships (reasoning-gym): what one person is to another, from a short story.

The teacher reads the family from the story itself ("X is married to Y. They have
children called A and B."), names' genders from reasoning-gym's name lists, then
walks the relations that link the two people, one fact a line, and ends with the
relation asked for. Paths:
  from-first   the walk starts at the first person of the question;
  from-second  the same facts, walked from the second person.
The filter checks every fact against the story and the last line against the answer.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from thinkling.distill.tasks.base import Chain, Problem
from thinkling.distill.tasks.rg import ReasoningGymTask

_MARRIED = re.compile(r"(\w+) is married to (\w+)\.")
_CHILDREN = re.compile(r"They have (?:a child|children) called ([\w, ]+?)\.")
_FACT = re.compile(r"^(\w+) is (\w+)'s (\w+)\.$")


@dataclass
class Family:
    """The story's people: spouse, parents and gender of each."""

    spouse: dict[str, str] = field(default_factory=dict)
    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)
    male: set[str] = field(default_factory=set)

    def relation(self, a: str, b: str) -> str | None:
        """What ``a`` is to ``b`` in one step (mother, son, wife, ...), or None."""
        m = a in self.male
        if a in self.parents.get(b, ()):
            return "father" if m else "mother"
        if b in self.parents.get(a, ()):
            return "son" if m else "daughter"
        if self.spouse.get(a) == b:
            return "husband" if m else "wife"
        return None


def read_family(story: str, male_names: set[str]) -> Family:
    """The family a reasoning-gym story describes."""
    fam = Family()
    people: set[str] = set()
    for sentence in re.split(r"(?<=\.) ", story.split("\n\n")[0]):
        if (m := _MARRIED.match(sentence)) is not None:
            a, b = m[1], m[2]
            fam.spouse[a], fam.spouse[b] = b, a
            couple = (a, b)
            people |= {a, b}
        elif (m := _CHILDREN.match(sentence)) is not None:
            for child in re.split(r", | and ", m[1]):
                fam.parents[child] = couple
                people.add(child)
    fam.male = {p for p in people if p in male_names}
    return fam


def _final(p1: str, p2: str, answer: str) -> str:
    """The last line. reasoning-gym labels "what is p1 to p2" with p2's relation to p1 for
    in-laws (p2 is a parent of p1's spouse); the line states the fact the label stands for."""
    if answer.endswith("-in-law"):
        return f"So {p2} is {p1}'s {answer}."
    return f"So {p1} is {p2}'s {answer}."


def _walk(fam: Family, a: str, b: str) -> list[tuple[str, str]] | None:
    """The shortest chain of one-step relations from ``a`` to ``b`` (breadth first)."""
    frontier, seen = [[a]], {a}
    while frontier:
        nxt = []
        for path in frontier:
            here = path[-1]
            near = [*fam.parents.get(here, ()), *(c for c, ps in fam.parents.items() if here in ps)]
            if here in fam.spouse:
                near.append(fam.spouse[here])
            for p in near:
                if p == b:
                    return list(zip(path, path[1:] + [b]))
                if p not in seen:
                    seen.add(p)
                    nxt.append(path + [p])
        frontier = nxt
    return None


class FamilyRelationships(ReasoningGymTask):
    name = "family_relationships"
    dataset = "family_relationships"
    check = "exact"
    config: dict = {}
    paths = ("from-first", "from-second")

    def level(self, entry: dict) -> str:
        return entry["metadata"]["relationship"]

    def family(self, problem: Problem) -> Family:
        from reasoning_gym.graphs.family_relationships import FamilyRelationshipsConfig

        return read_family(problem.question, set(FamilyRelationshipsConfig().male_names))

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` walks: from the first person, then from the second."""
        fam = self.family(problem)
        p1, p2 = problem.meta["person1"], problem.meta["person2"]
        out = []
        for path, (a, b) in (("from-first", (p1, p2)), ("from-second", (p2, p1))):
            links = _walk(fam, a, b)
            if links is None:
                continue
            # each fact is written "X is Y's R", X the later person of the walk
            facts = [f"{y} is {x}'s {fam.relation(y, x)}." for x, y in links]
            facts.append(_final(p1, p2, problem.answer))
            out.append(Chain(path, facts, problem.answer))
        return out[:k]

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None if every fact holds in the story, they link the two people, and the answer is right."""
        fam = self.family(problem)
        p1, p2 = problem.meta["person1"], problem.meta["person2"]
        if len(chain.steps) < 2:
            return "too short"
        linked: set[str] = set()
        for k, line in enumerate(chain.steps[:-1]):
            m = _FACT.match(line)
            if m is None:
                return f"malformed line {k + 1}"
            if fam.relation(m[1], m[2]) != m[3]:
                return f"wrong fact {k + 1}: {line}"
            if k and not {m[1], m[2]} & linked:
                return f"fact {k + 1} does not follow the walk: {line}"
            linked |= {m[1], m[2]}
        if not {p1, p2} <= linked:
            return "the facts do not link the two people"
        if chain.steps[-1] != _final(p1, p2, chain.answer.strip()):
            return "last line does not state the answer"
        if not self.score(problem, chain.answer):
            return "wrong answer"
        return None

    def wrong_answer(self, rng: random.Random, answer: str) -> str:
        swap = {"mother": "father", "father": "mother", "son": "daughter", "daughter": "son",
                "wife": "husband", "husband": "wife", "sister": "brother", "brother": "sister",
                "grandmother": "mother", "grandfather": "father", "aunt": "mother", "uncle": "father",
                "niece": "daughter", "nephew": "son", "mother-in-law": "mother", "father-in-law": "father"}
        return swap.get(answer, "sister")

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        """A fact with its relation swapped, a fact dropped, or the wrong answer."""
        kind = rng.choice(("wrong_fact", "skipped_step", "wrong_final"))
        steps = list(chain.steps)
        if kind == "wrong_fact" and len(steps) > 1:
            i = rng.randrange(len(steps) - 1)
            m = _FACT.match(steps[i])
            steps[i] = f"{m[1]} is {m[2]}'s {self.wrong_answer(rng, m[3])}."
            return Chain(chain.path, steps, chain.answer)
        if kind == "skipped_step" and len(steps) > 2:
            del steps[rng.randrange(len(steps) - 1)]
            return Chain(chain.path, steps, chain.answer)
        bad = self.wrong_answer(rng, chain.answer)
        head = steps[-1].rpartition("'s ")[0]
        steps[-1] = f"{head}'s {bad}."  # the same people, a wrong relation
        return Chain(chain.path, steps, bad)


TASK = FamilyRelationships()
