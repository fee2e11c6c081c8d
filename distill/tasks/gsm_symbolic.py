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

from thinkling.distill.tasks.base import Chain, Problem
from thinkling.distill.tasks.rg import ReasoningGymTask, bucket_of, wrong_number

SEEN, UNSEEN = range(0, 70), range(70, 100)
# a number ($, thousands commas, %), an operator, or a word; "shrimp/minute" and "-pound" are words
_TOKEN = re.compile(r"\$?(\d[\d,]*(?:\.\d+)?(?:/\d+(?![\d.]))?)%?|(-?[A-Za-z][\w'’]*(?:[-/][A-Za-z][\w'’]*)*)|([-+*/×=()])")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_UNIT_WORDS = 3  # "feet per plant"
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b if b else math.nan}


def skeleton(line: str) -> str:
    """The arithmetic of a line: its numbers, operators, brackets and ``=``; words dropped.

    A unit after a number (``24 shrimp / 4 shrimp/minute``) is dropped silently; a longer run
    of words becomes ``|``, which no expression spans (``196 wasps ... is half * 196``).
    """
    out: list[str] = []
    words = 0
    for m in _TOKEN.finditer(_BULLET.sub("", line).replace("÷", " / ")):
        if m[2] is not None and m[2] != "x":
            words += 1
            if words == _UNIT_WORDS + 1:
                out.append("|")
            continue
        words = 0
        if m[1] is not None:
            num = m[1].replace(",", "")
            num = f"({num})" if "/" in num else num  # 10÷1/2: a written fraction is one number
            out.append(f"({num}/100)" if m[0].endswith("%") else num)
        else:
            out.append("*" if m[0] in ("x", "×") else m[0])
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
        lhs = lhs.rpartition("|")[2].strip()
        if _value(lhs) is None and " " in lhs:  # "= 7 and 7 * 2 =": the 7 before 'and' closed the last one
            lhs = lhs.split(" ", 1)[1]
        # the right side's longest leading expression: "= 1/4 miles" keeps 1 / 4, "= 6 minutes 3" keeps 6
        tokens = rhs.partition("|")[0].split()
        rhs = next((" ".join(tokens[:j]) for j in range(len(tokens), 0, -1)
                    if _value(" ".join(tokens[:j])) is not None), "")
        # a lone number on the left ("half * 196" lost its "half") says nothing to check
        if re.search(r"[-+*/]", lhs) and _value(lhs) is not None and rhs and _value(rhs) is not None:
            pairs.append((lhs, rhs))
    return pairs


def _close(value: float, written: float) -> bool:
    # the worked chains round: money to cents, people to whole ones (0.66 * 40 = 26)
    return math.isclose(value, written, rel_tol=1e-6, abs_tol=0.01) or (
        written == int(written) and math.floor(value) <= written <= math.ceil(value))


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
            entry["metadata"]["rg_seed"] = seed  # with source_index, how a test regenerates it
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

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        """One equation's result changed, or a wrong answer. (A dropped line is not a
        mistake the filter can see here: the chains are prose, nothing grounds a number.)"""
        lines = [i for i, ln in enumerate(chain.steps) if equations(ln)]
        if not lines or rng.random() < 0.3:
            return Chain(chain.path, chain.steps, self.wrong_answer(rng, chain.answer))
        i = rng.choice(lines)
        line = chain.steps[i]
        # the first number after an "=": the result of the line's (first) equation
        m = re.search(r"=\s*\$?(\d+(?:\.\d+)?)", line)
        if m is None:
            return Chain(chain.path, chain.steps, self.wrong_answer(rng, chain.answer))
        steps = list(chain.steps)
        steps[i] = line[: m.start(1)] + wrong_number(rng, m[1]) + line[m.end(1):]
        return Chain(chain.path, steps, chain.answer)


TASK = GSMSymbolic()
