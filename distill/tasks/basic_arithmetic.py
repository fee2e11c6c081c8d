"""basic_arithmetic (reasoning-gym): integer expressions with parentheses, ``+ - * /``.

reasoning-gym evaluates ``/`` as floor division (its divisions are exact by
construction). Teacher paths, one ``a op b = c`` line per operation:
  inner    the expression tree bottom-up, left operand first;
  right    the same, but a right subtree before the left one (distinct only when
           both sides hold an operation);
  commute  as inner, with every sum and product written the other way round (``7 + 5``
           as ``5 + 7``).
A negated group is one line, ``-(a) = c``. The filter checks every line's
arithmetic, that its operands are numbers of the question or earlier results,
that every result but the last is used later, and the last result is the answer.
"""

from __future__ import annotations

import ast
import random
import re

from thinkling.distill.tasks.base import Chain, Problem
from thinkling.distill.tasks.rg import ReasoningGymTask

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_STEP = re.compile(r"^(-?\d+) ([-+*/]) (-?\d+) = (-?\d+)$")
_NEG = re.compile(r"^-\((-?\d+)\) = (-?\d+)$")


def apply(a: int, op: str, b: int) -> int | None:
    """``a op b`` as reasoning-gym computes it; None for a division by zero."""
    if op == "/":
        return a // b if b else None
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _literal(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant):
        return int(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -int(node.operand.value)
    return None


def numbers_of(expression: str) -> set[int]:
    """The literals of the expression, with their written sign."""
    return {v for node in ast.walk(ast.parse(expression, mode="eval")) if (v := _literal(node)) is not None}


def solve(expression: str, right_first: bool = False, commute: bool = False) -> tuple[list[str], int]:
    """The step lines of one path and the value."""
    steps: list[str] = []

    def walk(node: ast.AST) -> int:
        if (v := _literal(node)) is not None:
            return v
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            steps.append(f"-({inner}) = {-inner}")
            return -inner
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            if right_first:
                b = walk(node.right)
                a = walk(node.left)
            else:
                a = walk(node.left)
                b = walk(node.right)
            c = apply(a, _OPS[type(node.op)], b)
            if c is None:
                raise ZeroDivisionError(expression)
            op = _OPS[type(node.op)]
            steps.append(f"{b} {op} {a} = {c}" if commute and op in "+*" else f"{a} {op} {b} = {c}")
            return c
        raise ValueError(f"not an expression of the task: {expression!r}")

    value = walk(ast.parse(expression, mode="eval").body)
    return steps, value


class BasicArithmetic(ReasoningGymTask):
    name = "basic_arithmetic"
    dataset = "basic_arithmetic"
    check = "number"
    # small enough for a 270M student's chains: up to 4 terms of up to 2 digits
    config = {"min_terms": 2, "max_terms": 4, "min_digits": 1, "max_digits": 2}
    paths = ("inner", "right", "commute")

    def level(self, entry: dict) -> str:
        return f"{entry['metadata']['num_terms']} terms"

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` distinct paths, the left-first one first."""
        out: list[Chain] = []
        for path, right, commute in (("inner", False, False), ("right", True, False), ("commute", False, True)):
            steps, value = solve(problem.meta["expression"], right, commute)
            if str(value) == problem.answer and all(c.steps != steps for c in out):
                out.append(Chain(path, steps, problem.answer))
        return out[:k]

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None if every line is right, grounded and used, and the last is the answer."""
        if not chain.steps:
            return "empty chain"
        pool = numbers_of(problem.meta["expression"])
        pool |= {abs(v) for v in pool}
        results: list[int] = []
        operands: list[list[int]] = []
        for k, line in enumerate(chain.steps):
            if (m := _STEP.match(line)) is not None:
                a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
                ok = apply(a, op, b) == c
                used = [a, b]
            elif (m := _NEG.match(line)) is not None:
                a, c = int(m[1]), int(m[2])
                ok, used = c == -a, [a]
            else:
                return f"malformed line {k + 1}"
            if not ok:
                return f"wrong step {k + 1}: {line}"
            if any(x not in pool for x in used):
                return f"ungrounded operand in step {k + 1}: {line}"
            pool.add(c)
            results.append(c)
            operands.append(used)
        for k, c in enumerate(results[:-1]):
            if not any(c in ops for ops in operands[k + 1:]):
                return f"result of step {k + 1} is never used"
        if str(results[-1]) != chain.answer.strip():
            return "answer differs from the last step"
        if not self.score(problem, chain.answer):
            return "wrong answer"
        return None


TASK = BasicArithmetic()
