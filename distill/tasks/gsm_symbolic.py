"""gsm_symbolic (reasoning-gym): grade-school word problems from 100 templates.

Templates 0-69 feed train, calib and test; 70-99 only the ``test-unseen`` split,
so the gap between seen and unseen templates measures template overfitting.
(reasoning-gym marks some templates as broken and never draws them.)

Teacher paths:
  rg-cot     reasoning-gym's own worked chain (``answer_cot``), its ``#### n`` line dropped;
  equations  the same chain reduced to its arithmetic: each line's numbers and
             operators only (``24 / 4 = 6``): short, for a small student.
The filter evaluates every equation a line holds (numbers, ``+ - * /``, brackets,
``=``) and rejects a chain with a wrong one, or whose answer is not the reference.
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections.abc import Iterator

from distill.tasks.base import Chain, Problem
from distill.tasks.rg import ReasoningGymTask, bucket_of

SEEN, UNSEEN = range(0, 70), range(70, 100)
_TOKEN = re.compile(r"\$?(\d[\d,]*(?:\.\d+)?)%?|([-+*/×x=()])(?=\s|$|\d|\()|(\S+)")
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b if b else math.nan}


def skeleton(line: str) -> str:
    """The arithmetic of a line: its numbers, operators, brackets and ``=``; words dropped."""
    out = []
    for m in _TOKEN.finditer(line.replace("×", " * ")):
        if m[1] is not None:
            num = m[1].replace(",", "").rstrip(".")
            out.append(f"({num}/100)" if m[0].endswith("%") else num)
        elif m[2] is not None:
            out.append("*" if m[2] in "x×" else m[2])
    return " ".join(out)


def _value(expr: str) -> float | None:
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError

    try:
        return ev(tree)
    except (ValueError, OverflowError):
        return None


def equations(line: str) -> list[tuple[str, str]]:
    """The checkable ``lhs = rhs`` pairs of a line, each side an expression with an operator or a number."""
    sides = [s.strip() for s in skeleton(line).split("=")]
    pairs = []
    for lhs, rhs in zip(sides, sides[1:]):
        # the right side's first number only: "= 6 minutes 3" keeps 6
        rhs = rhs.split(" ")[0] if rhs else rhs
        if lhs and rhs and _value(lhs) is not None and _value(rhs) is not None:
            pairs.append((lhs, rhs))
    return pairs


def _close(a: float, b: float) -> bool:
    # chains round money and shares to 2 places
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.01)


class GSMSymbolic(ReasoningGymTask):
    name = "gsm_symbolic"
    dataset = "gsm_symbolic"
    check = "number"
    splits = ("train", "calib", "test", "test-unseen")
    paths = ("rg-cot", "equations")

    def entries(self, split: str, seed: int, size: int) -> Iterator[dict]:
        """reasoning-gym's entries, drawn only from the split's templates."""
        from reasoning_gym.arithmetic.gsm_symbolic.gsm_symbolic import tasks_ok

        import reasoning_gym

        allowed = [t for t in tasks_ok if t in (UNSEEN if split == "test-unseen" else SEEN)]
        ds = reasoning_gym.create_dataset(self.dataset, seed=seed, size=size)
        # reasoning-gym draws each item's template from this list: restrict the draw
        ds.task_indices = random.Random(seed).choices(allowed, k=size)
        for i in range(size):
            entry = ds[i]
            entry["metadata"]["template"] = ds.task_indices[i]
            yield entry

    def in_split(self, split: str, entry: dict) -> bool:
        return split == "test-unseen" or bucket_of(entry["question"]) == split

    def level(self, entry: dict) -> str:
        return f"template {entry['metadata']['template']}"

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` paths: reasoning-gym's chain, then its equations only."""
        lines = [ln.strip() for ln in problem.meta["answer_cot"].splitlines()
                 if ln.strip() and not ln.startswith("####")]
        eqs = [" = ".join(pair) for ln in lines for pair in equations(ln)]
        out = [Chain("rg-cot", lines, problem.answer)]
        if eqs and eqs != lines:
            out.append(Chain("equations", eqs, problem.answer))
        return out[:k]

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """None if every equation in the chain holds and the answer is the reference."""
        if not chain.steps:
            return "empty chain"
        for k, line in enumerate(chain.steps):
            for lhs, rhs in equations(line):
                if not _close(_value(lhs), _value(rhs)):
                    return f"wrong step {k + 1}: {lhs} = {rhs}"
        if not self.score(problem, chain.answer):
            return "wrong answer"
        return None


TASK = GSMSymbolic()
