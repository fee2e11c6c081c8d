"""What every reasoning-gym-backed task shares: sampling by split, scoring, noise.

Splits are disjoint by construction: each split reads reasoning-gym from its own
seed (far apart, since reasoning-gym seeds item ``i`` with ``seed + i``) and keeps
only the questions whose hash falls in its bucket, so a question can never be in
two splits even when two seeds produce it. reasoning-gym is imported on first use.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections.abc import Iterator

from thinkling.distill.tasks.base import SPLITS, Chain, Problem, TaskError

# share of the question space (per mille) that belongs to each split
BUCKETS = {"train": (0, 800), "calib": (800, 900), "test": (900, 1000)}


def bucket_of(question: str) -> str:
    """The split a question belongs to, by a hash of its text."""
    h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "big") % 1000
    return next(s for s, (lo, hi) in BUCKETS.items() if lo <= h < hi)


def split_seed(task: str, split: str, seed: int) -> int:
    """The reasoning-gym seed of one split: 48 bits of a hash, so runs never overlap."""
    digest = hashlib.blake2b(f"{task}/{split}/{seed}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def rg_entries(dataset: str, seed: int, size: int, **config) -> Iterator[dict]:
    """reasoning-gym entries ``0..size-1`` of ``dataset`` (imported here: an extra)."""
    import reasoning_gym

    ds = reasoning_gym.create_dataset(dataset, seed=seed, size=size, **config)
    return (ds[i] for i in range(size))


def wrong_number(rng: random.Random, value: str) -> str:
    """A plausible slip on a number written as text: off by one, two or ten."""
    try:
        v = int(value)
    except ValueError:
        v = round(float(value))
    # never below zero from a non-negative value: a sign is a slip no filter has to read
    return str(rng.choice([v + d for d in (-10, -2, -1, 1, 2, 10) if v < 0 or v + d >= 0]))


class ReasoningGymTask:
    """Sampling, scoring and the generic noise of a reasoning-gym dataset.

    A subclass names the dataset, its config, its checker, and writes
    ``level``, ``chains``, ``verify`` and ``corrupt_steps``.
    """

    name = ""
    dataset = ""
    check = "number"
    config: dict = {}
    splits: tuple[str, ...] = SPLITS
    paths: tuple[str, ...] = ()

    def entries(self, split: str, seed: int, size: int) -> Iterator[dict]:
        return rg_entries(self.dataset, seed, size, **self.config)

    def in_split(self, split: str, entry: dict) -> bool:
        return bucket_of(entry["question"]) == split

    def level(self, entry: dict) -> str:
        raise NotImplementedError

    def meta(self, entry: dict) -> dict:
        return dict(entry["metadata"])

    def sample(self, split: str, n: int, seed: int) -> list[Problem]:
        """``n`` distinct problems of ``split``, the same for a seed."""
        if split not in self.splits:
            raise TaskError(split, self.splits, what=f"split of {self.name}")
        problems: list[Problem] = []
        seen: set[str] = set()
        size = 12 * n + 50  # a bucket keeps 10-80% of the questions; rare misses take a new round
        for round_ in itertools.count():
            for entry in self.entries(split, split_seed(self.name, f"{split}#{round_}", seed), size):
                q = entry["question"]
                if q in seen or not self.in_split(split, entry):
                    continue
                seen.add(q)
                problems.append(Problem(f"{self.name}/{split}/{seed}/{len(problems)}", self.name, split,
                                        self.level(entry), q, str(entry["answer"]), self.check,
                                        self.meta(entry)))
                if len(problems) == n:
                    return problems
            if round_ > 20:
                raise RuntimeError(f"{self.name}: only {len(problems)} distinct {split} problems of {n}")
        raise AssertionError("unreachable")

    def score(self, problem: Problem, answer: str) -> bool:
        """The shared checker of ``bench.tasksets`` on the problem's row."""
        from thinkling.bench.tasksets import score  # imports the runtime's errors: only when scoring

        return score(problem.row(), answer)

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        """The chain with one step's number changed, a step dropped, or a wrong answer."""
        kind = rng.choice(("wrong_step", "skipped_step", "wrong_final"))
        if kind == "wrong_final" or not chain.steps:
            return Chain(chain.path, chain.steps, self.wrong_answer(rng, chain.answer))
        steps = list(chain.steps)
        if kind == "skipped_step" and len(steps) > 1:
            del steps[rng.randrange(len(steps) - 1)]
            return Chain(chain.path, steps, chain.answer)
        i = rng.randrange(len(steps))
        bad = _change_last_number(rng, steps[i])
        if bad is None:
            return Chain(chain.path, steps, self.wrong_answer(rng, chain.answer))
        steps[i] = bad
        return Chain(chain.path, steps, chain.answer)

    def wrong_answer(self, rng: random.Random, answer: str) -> str:
        return wrong_number(rng, answer)


_LAST_NUMBER = re.compile(r"-?\d+(?!.*\d)")


def _change_last_number(rng: random.Random, line: str) -> str | None:
    m = _LAST_NUMBER.search(line)
    if m is None:
        return None
    return line[: m.start()] + wrong_number(rng, m.group()) + line[m.end():]
