"""The filter: verifies every step and the final answer of a written chain.

A chain passes when
  1. every line parses as ``a op b = c`` and its arithmetic is right (in 0..999),
  2. every operand is grounded: a number of the problem, an earlier result, or one
     half of a split whose two parts sum to such a number (``7 * 40``, ``7 * 8``),
  3. every result but the last is used by a later step, whole or split (nothing dangles),
  4. the last result, the stated answer and the value of the expression agree.

``python -m thinkling.distill.filter`` reports precision and recall on the noisy teacher's
injected mistakes. Pure Python on purpose: CI runs these tests without torch.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass

from thinkling.distill.chat import split_completion
from thinkling.distill.noise import MISTAKES, noisy_chain
from thinkling.distill.problems import OPS, Problem, apply_op, in_range, sample_problem
from thinkling.distill.teacher import Step

_STEP = re.compile(r"^(\d+) ([-+*]) (\d+) = (\d+)$")


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""


def parse_steps(reasoning: str) -> list[Step] | None:
    """Parse newline-separated ``a op b = c`` lines; None if any line is malformed."""
    steps = []
    for line in reasoning.split("\n"):
        m = _STEP.match(line)
        if m is None:
            return None
        steps.append(Step(int(m[1]), m[2], int(m[3]), int(m[4])))
    return steps


def _grounded(x: int, pool: set[int], operands: list[int], own: int) -> bool:
    if x in pool:
        return True
    return any(x + y in pool for k, y in enumerate(operands) if k != own)


def verify_steps(problem: Problem, steps: list[Step], answer: int) -> Verdict:
    """Check a parsed chain against the problem (see the module docstring for the rules)."""
    if not steps:
        return Verdict(False, "empty chain")
    operands = [v for st in steps for v in (st.a, st.b)]
    pool = set(problem.numbers)
    for k, st in enumerate(steps):
        if st.op not in OPS or apply_op(st.a, st.op, st.b) != st.c or not in_range(st.c):
            return Verdict(False, f"wrong step {k + 1}: {st.text}")
        if not (_grounded(st.a, pool, operands, 2 * k) and _grounded(st.b, pool, operands, 2 * k + 1)):
            return Verdict(False, f"ungrounded operand in step {k + 1}: {st.text}")
        pool.add(st.c)
    for k, st in enumerate(steps[:-1]):
        later = operands[2 * k + 2 :]
        # Used whole, or split into two later operands (85 -> 80 + 5).
        used = st.c in later or any(
            st.c - x in later[i + 1 :] for i, x in enumerate(later))
        if not used:
            return Verdict(False, f"result of step {k + 1} is never used")
    if steps[-1].c != answer:
        return Verdict(False, "answer differs from the last step")
    if answer != problem.value:
        return Verdict(False, "answer differs from the value of the expression")
    return Verdict(True)


def verify_completion(problem: Problem, completion: str, mode: str) -> Verdict:
    """Verify a completion in 'direct', 'think' or 'post' format."""
    reasoning, answer_text = split_completion(completion, mode)
    if not answer_text.isdigit():
        return Verdict(False, f"answer is not an integer: {answer_text!r}")
    answer = int(answer_text)
    if mode == "direct":
        return Verdict(answer == problem.value, "" if answer == problem.value else "wrong answer")
    steps = parse_steps(reasoning)
    if steps is None:
        return Verdict(False, "malformed step line")
    return verify_steps(problem, steps, answer)


def filter_report(n: int = 20000, seed: int = 0, mistake_rate: float = 0.25) -> dict:
    """Precision and recall of the filter on ``n`` noisy chains (positives = injected mistakes)."""
    rng = random.Random(seed)
    counts: Counter = Counter()
    for _ in range(n):
        chain = noisy_chain(rng, sample_problem(rng, rng.randint(1, 4)), mistake_rate)
        rejected = not verify_completion(chain.problem, chain.completion, chain.mode).ok
        label = chain.mistake or "clean"
        counts[(label, rejected)] += 1
    tp = sum(counts[(m, True)] for m in MISTAKES)
    fn = sum(counts[(m, False)] for m in MISTAKES)
    fp = counts[("clean", True)]
    per_class = {
        m: counts[(m, True)] / max(1, counts[(m, True)] + counts[(m, False)]) for m in MISTAKES
    }
    return {
        "chains": n,
        "injected": tp + fn,
        "clean": fp + counts[("clean", False)],
        "precision": tp / max(1, tp + fp),
        "recall": tp / max(1, tp + fn),
        "recall_per_class": per_class,
        "false_rejections": fp,
        "missed": fn,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=filter_report.__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mistake-rate", type=float, default=0.25)
    args = parser.parse_args(argv)
    print(json.dumps(filter_report(args.n, args.seed, args.mistake_rate), indent=2))


if __name__ == "__main__":
    main()
