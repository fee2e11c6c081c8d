"""Arithmetic problems of the student's grammar: generation, evaluation, split.

Grammar: integers 0..99; operators ``+ - *`` with the usual precedence and no
parentheses; 1 to 4 operations; every multiplication step has a single-digit
operand; every intermediate and final result lies in 0..999.

Pure Python on purpose: CI runs the teacher tests without torch.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

OPS = ("+", "-", "*")
MIN_VALUE, MAX_VALUE = 0, 999
MAX_OPS = 4


@dataclass(frozen=True)
class Problem:
    """An expression ``numbers[0] ops[0] numbers[1] ...`` (no parentheses)."""

    numbers: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def text(self) -> str:
        """The bare expression, e.g. ``37 + 4 * 12 - 9``."""
        parts = [str(self.numbers[0])]
        for op, n in zip(self.ops, self.numbers[1:]):
            parts += [op, str(n)]
        return " ".join(parts)

    @property
    def n_ops(self) -> int:
        return len(self.ops)

    def terms(self) -> list[tuple[str, list[int]]]:
        """Signed products: ``37 + 4 * 12 - 9`` -> ``[('+', [37]), ('+', [4, 12]), ('-', [9])]``."""
        terms = [("+", [self.numbers[0]])]
        for op, n in zip(self.ops, self.numbers[1:]):
            if op == "*":
                terms[-1][1].append(n)
            else:
                terms.append((op, [n]))
        return terms

    @property
    def value(self) -> int:
        """The value under precedence (products first, then left to right)."""
        value = canonical_partials(self)
        if value is None:
            raise ValueError(f"not in the grammar: {self.text}")
        return value[-1]


def apply_op(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operator {op!r}")


def in_range(v: int) -> bool:
    return MIN_VALUE <= v <= MAX_VALUE


def canonical_partials(problem: Problem) -> list[int] | None:
    """Every partial result of the precedence evaluation, or None if one leaves the grammar.

    Products are evaluated left to right inside each term (each step needs a
    single-digit operand), then the signed terms are folded left to right.
    """
    products = []
    partials = []
    for _, factors in problem.terms():
        acc = factors[0]
        for f in factors[1:]:
            if acc > 9 and f > 9:
                return None
            acc *= f
            partials.append(acc)
            if not in_range(acc):
                return None
        products.append(acc)
    total = products[0]
    for (sign, _), p in zip(problem.terms()[1:], products[1:]):
        total = apply_op(total, sign, p)
        partials.append(total)
        if not in_range(total):
            return None
    return partials or [total]


def is_valid(problem: Problem) -> bool:
    """True if the problem satisfies every constraint of the grammar."""
    return (
        1 <= problem.n_ops <= MAX_OPS
        and len(problem.numbers) == problem.n_ops + 1
        and all(0 <= n <= 99 for n in problem.numbers)
        and all(op in OPS for op in problem.ops)
        and all(
            min(problem.numbers[i], problem.numbers[i + 1]) <= 9
            for i, op in enumerate(problem.ops)
            if op == "*"
        )
        and canonical_partials(problem) is not None
    )


def _sample_number(rng: random.Random, single_digit: bool) -> int:
    if single_digit:
        return rng.randint(0, 9)
    # A share of small numbers keeps single-digit arithmetic in the data.
    return rng.randint(0, 9) if rng.random() < 0.2 else rng.randint(0, 99)


def sample_problem(rng: random.Random, n_ops: int, max_tries: int = 1000) -> Problem:
    """Sample a problem with ``n_ops`` operations uniformly-ish by rejection."""
    for _ in range(max_tries):
        ops = tuple(rng.choice(OPS) for _ in range(n_ops))
        single = [False] * (n_ops + 1)
        for i, op in enumerate(ops):
            if op == "*" and not (single[i] or single[i + 1]):
                single[i + rng.randint(0, 1)] = True
        numbers = tuple(_sample_number(rng, s) for s in single)
        problem = Problem(numbers, ops)
        if is_valid(problem):
            return problem
    raise RuntimeError(f"could not sample a {n_ops}-operation problem")


def split_of(problem: Problem, heldout_per_mille: int = 100) -> str:
    """'eval' or 'train', by a hash of the expression, so the split is stable everywhere."""
    digest = hashlib.blake2b(problem.text.encode(), digest_size=8).digest()
    return "eval" if int.from_bytes(digest, "big") % 1000 < heldout_per_mille else "train"


def sample_split_problem(rng: random.Random, n_ops: int, split: str) -> Problem:
    """Sample a problem from one side of the hash split."""
    while True:
        problem = sample_problem(rng, n_ops)
        if split_of(problem) == split:
            return problem


def parse_problem(text: str) -> Problem:
    """Parse ``37 + 4 * 12 - 9`` (or ``What is ...?``) back into a Problem."""
    text = text.strip()
    if text.startswith("What is ") and text.endswith("?"):
        text = text[len("What is ") : -1]
    tokens = text.split()
    if len(tokens) % 2 == 0:
        raise ValueError(f"not an expression: {text!r}")
    numbers = tuple(int(t) for t in tokens[0::2])
    ops = tuple(tokens[1::2])
    return Problem(numbers, ops)
