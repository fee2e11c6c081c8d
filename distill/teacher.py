"""The teacher: a programmatic solver that writes several valid reasoning paths.

A path is a list of checkable ``a op b = c`` steps that ends with the value of
the expression. Paths differ by strategy: the order in which signed terms are
folded, whether a product is computed up front or when reached, splitting an
operand into tens and ones (``7 * 48`` as ``7 * 40 + 7 * 8``) or halves, and
writing commutative steps the other way round.

Pure Python on purpose: CI runs the teacher tests without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from thinkling.distill.chat import render_completion
from thinkling.distill.problems import Problem, apply_op, in_range

MAX_PATHS = 5
MIN_PATHS = 3


@dataclass(frozen=True)
class Step:
    """One line of a reasoning chain: ``a op b = c``."""

    a: int
    op: str
    b: int
    c: int

    @property
    def text(self) -> str:
        return f"{self.a} {self.op} {self.b} = {self.c}"


@dataclass(frozen=True)
class Strategy:
    """How the teacher walks an expression.

    order: 'written' folds terms left to right; 'positives_first' adds every
    positive term before subtracting; 'plain_first' folds plain numbers before
    products. lazy: compute a product only when the fold reaches it.
    split_mul / split_add: '' (no split), 'tens' (48 -> 40 + 8), 'halves'
    (48 -> 24 + 24) or, for additions only, 'bridge' (48 + 7 -> 48 + 2 + 5)
    and 'ones' (37 - 2 -> 7 - 2 = 5, 30 + 5 = 35).
    commute: write ``b * a`` and ``t + acc``.
    """

    order: str = "written"
    lazy: bool = False
    split_mul: str = ""
    split_add: str = ""
    commute: bool = False


# Every step of the fully split path touches one digit (``7 * 40``, ``280 + 50``,
# ``330 + 6``): the easiest chain for a tiny student, so training prefers it.
FULLY_SPLIT = Strategy(split_mul="tens", split_add="tens")

# Priority order: the first is the canonical path; later ones only fill up to
# MAX_PATHS distinct paths. 'halves' comes last because it is the least natural
# and exists so that small problems (``3 * 7``) still get several paths.
STRATEGIES = (
    Strategy(),
    FULLY_SPLIT,
    Strategy(lazy=True),
    Strategy(split_mul="tens"),
    Strategy(split_add="tens"),
    Strategy(order="positives_first"),
    Strategy(commute=True),
    Strategy(order="plain_first"),
    Strategy(lazy=True, split_mul="tens", split_add="tens"),
    Strategy(split_mul="tens", split_add="tens", commute=True),
    Strategy(split_add="tens", commute=True),
    Strategy(split_add="bridge"),
    Strategy(split_add="ones"),
    Strategy(split_mul="halves"),
    Strategy(split_add="halves"),
)


def _parts(x: int, how: str, acc: int = 0, sign: str = "+") -> tuple[int, int] | None:
    if how == "tens" and x >= 10 and x % 10:
        return (x - x % 10, x % 10)
    if how == "bridge":
        # Go through the next ten first: 48 + 7 -> 48 + 2, 50 + 5; 48 - 9 -> 48 - 8, 40 - 1.
        first = (10 - acc % 10) % 10 if sign == "+" else acc % 10
        return (first, x - first) if 0 < first < x else None
    if how == "halves" and x >= 2:
        return (x - x // 2, x // 2)
    return None


def _mul(a: int, b: int, s: Strategy, steps: list[Step]) -> int:
    c = a * b
    # Split the larger operand; the single-digit one stays whole.
    big_left = a > b
    x, d = (a, b) if big_left else (b, a)
    parts = _parts(x, s.split_mul) if s.split_mul else None
    if parts is None:
        steps.append(Step(b, "*", a, c) if s.commute else Step(a, "*", b, c))
        return c
    products = [p * d for p in parts]
    for p, pd in zip(parts, products):
        steps.append(Step(p, "*", d, pd) if big_left else Step(d, "*", p, pd))
    # The partial products are added like any term (and split the same way).
    return _combine(products[0], "+", products[1], s, steps)


def _combine(acc: int, sign: str, t: int, s: Strategy, steps: list[Step]) -> int:
    if s.split_add == "ones" and acc >= 10 and 0 <= apply_op(acc % 10, sign, t) <= 9:
        # Work on the ones digit only: 37 - 2 -> 7 - 2 = 5, 30 + 5 = 35.
        ones = apply_op(acc % 10, sign, t)
        steps.append(Step(acc % 10, sign, t, ones))
        steps.append(Step(acc - acc % 10, "+", ones, acc - acc % 10 + ones))
        return acc - acc % 10 + ones
    parts = _parts(t, s.split_add, acc, sign) if s.split_add else None
    for part in parts or (t,):
        r = apply_op(acc, sign, part)
        if s.commute and sign == "+":
            steps.append(Step(part, "+", acc, r))
        else:
            steps.append(Step(acc, sign, part, r))
        acc = r
    return acc


def _fold_order(terms: list[tuple[str, list[int]]], order: str) -> list[int]:
    idx = range(len(terms))
    if order == "written":
        return list(idx)
    if order == "positives_first":
        return [i for i in idx if terms[i][0] == "+"] + [i for i in idx if terms[i][0] == "-"]
    if order == "plain_first":
        return [i for i in idx if len(terms[i][1]) == 1] + [i for i in idx if len(terms[i][1]) > 1]
    raise ValueError(f"unknown order {order!r}")


def solve(problem: Problem, strategy: Strategy = Strategy()) -> list[Step] | None:
    """The steps of one strategy, or None if it leaves 0..999 or starts with a subtraction."""
    terms = problem.terms()
    order = _fold_order(terms, strategy.order)
    if terms[order[0]][0] != "+":
        return None
    steps: list[Step] = []
    products: dict[int, int] = {}

    def product(i: int) -> int:
        if i not in products:
            factors = terms[i][1]
            acc = factors[0]
            for f in factors[1:]:
                acc = _mul(acc, f, strategy, steps)
            products[i] = acc
        return products[i]

    if not strategy.lazy:
        for i in range(len(terms)):
            product(i)
    acc = product(order[0])
    for i in order[1:]:
        acc = _combine(acc, terms[i][0], product(i), strategy, steps)
    if not steps or not all(in_range(st.c) for st in steps):
        return None
    return steps


def reasoning_paths(problem: Problem, max_paths: int = MAX_PATHS) -> list[list[Step]]:
    """Up to ``max_paths`` distinct valid paths, the canonical (precedence) path first.

    Problems with at least one two-digit number, or with two or more
    operations, get at least MIN_PATHS; a few tiny ones (``3 - 2``) admit fewer.
    """
    paths: list[list[Step]] = []
    seen: set[tuple[Step, ...]] = set()
    for strategy in STRATEGIES:
        steps = solve(problem, strategy)
        if steps is None or tuple(steps) in seen:
            continue
        seen.add(tuple(steps))
        paths.append(steps)
        if len(paths) == max_paths:
            break
    return paths


def steps_text(steps: list[Step]) -> str:
    """Newline-separated step lines, as they appear between ``<think>`` and ``</think>``."""
    return "\n".join(st.text for st in steps)


@dataclass(frozen=True)
class Solution:
    """Everything the teacher writes for one problem."""

    problem: Problem
    answer: int
    paths: tuple[tuple[Step, ...], ...]

    def completion(self, mode: str, path: int = 0) -> str:
        """The assistant text in one format: 'direct', 'think' (pre) or 'post'."""
        steps = steps_text(list(self.paths[path])) if mode != "direct" else ""
        return render_completion(str(self.answer), steps, mode)


def teach(problem: Problem) -> Solution:
    """Solve a problem: its answer and every distinct reasoning path."""
    paths = reasoning_paths(problem)
    return Solution(problem, problem.value, tuple(tuple(p) for p in paths))
