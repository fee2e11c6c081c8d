"""The task protocol: what a skill must provide to be distilled.

A task samples problems by split, writes teacher chains (up to k distinct
reasoning paths), verifies a chain (the filter), scores a bare answer with the
shared checker of ``bench.tasksets``, and can corrupt a chain so the filter's
recall can be measured. ``distill.tasks.TASKS`` is the table of tasks: a new
skill is one module and one row there.

Pure Python on purpose: CI runs these tests without torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

SPLITS = ("train", "calib", "test")


@dataclass(frozen=True)
class Problem:
    """One question of a task, with what its checker and teacher need."""

    id: str  # stable: f"{task}/{split}/{seed}/{index}"
    task: str
    split: str  # "train" | "calib" | "test"; a task may add more (gsm_symbolic: "test-unseen")
    level: str  # a group label for reports ("2 ops", "weekday_offset", "len 7", ...)
    question: str
    answer: str  # reference answer text
    check: str  # the scorer name in bench/tasksets.py ("number", "exact", "reasoning-gym:<dataset>")
    meta: dict = field(default_factory=dict)  # what the checker / teacher needs

    def row(self) -> dict:
        """The row ``bench.tasksets.score`` and the bench task files read."""
        return {"question": self.question, "answer": self.answer, "check": self.check,
                "metadata": self.meta, "group": f"{self.task}/{self.level}", "id": self.id}


@dataclass(frozen=True)
class Chain:
    """One written solution: the teacher path it took, its reasoning lines, its answer."""

    path: str  # which teacher path ("written", "mod7", "spell", "rg-cot", ...)
    steps: list[str]  # reasoning lines
    answer: str

    @property
    def text(self) -> str:
        """The reasoning as it sits between ``<think>`` and ``</think>``."""
        return "\n".join(self.steps)


class Task(Protocol):
    """A skill: sampling, teacher, filter, checker and noise (see the module docstring)."""

    name: str

    def sample(self, split: str, n: int, seed: int) -> list[Problem]:
        """``n`` distinct problems of ``split``, the same for a seed."""
        ...

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` chains on DISTINCT teacher paths, the canonical one first."""
        ...

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None to keep the chain; else the reason it is rejected (the filter)."""
        ...

    def score(self, problem: Problem, answer: str) -> bool:
        """Whether a bare answer is right, through ``bench.tasksets.score``."""
        ...

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        """A plausibly wrong copy of ``chain`` (noise, to measure the filter), or None."""
        ...


class TaskError(ValueError):
    """A task name or split the table does not know."""

    def __init__(self, name: str, known: tuple[str, ...], what: str = "task"):
        self.name, self.known, self.what = name, known, what
        super().__init__(f"unknown {what} {name!r}; known: {', '.join(known)}")
