"""The noisy teacher: writes chains and, in some of them, makes realistic mistakes.

Every chain carries the label of the mistake injected into it (None if clean),
so the filter's precision and recall can be measured against the truth.

Mistake classes:
  wrong_intermediate  one step gets a wrong result, and later steps build on it
  skipped_step        a step is left out: either its result is used without being
                      derived (a leap), or the last operation is forgotten
  wrong_final         the chain is right but the stated answer is not

Pure Python on purpose: CI runs these tests without torch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from thinkling.distill.chat import render_completion
from thinkling.distill.problems import Problem, apply_op, in_range
from thinkling.distill.teacher import Step, steps_text, teach

MISTAKES = ("wrong_intermediate", "skipped_step", "wrong_final")


@dataclass(frozen=True)
class Chain:
    """One written solution in a reasoning format, with its (possibly injected) mistake."""

    problem: Problem
    mode: str
    completion: str
    mistake: str | None


def wrong_value(rng: random.Random, v: int) -> int:
    """A plausible slip: off by one or two, off by ten, or two digits swapped."""
    candidates = {v + 1, v - 1, v + 2, v - 2, v + 10, v - 10}
    s = str(v)
    if len(s) >= 2:
        candidates.add(int(s[:-2] + s[-1] + s[-2]))
    candidates = sorted(c for c in candidates if in_range(c) and c != v)
    return rng.choice(candidates)


def _wrong_intermediate(rng: random.Random, steps: list[Step], answer: int):
    i = rng.randrange(len(steps))
    bad = wrong_value(rng, steps[i].c)
    remap = {steps[i].c: bad}
    out = steps[:i] + [Step(steps[i].a, steps[i].op, steps[i].b, bad)]
    # Later steps build on the wrong value; their own arithmetic stays right.
    for st in steps[i + 1 :]:
        a, b = remap.get(st.a, st.a), remap.get(st.b, st.b)
        c = apply_op(a, st.op, b)
        if not in_range(c):
            return None
        if c != st.c:
            remap[st.c] = c
        out.append(Step(a, st.op, b, c))
    return out, remap.get(answer, answer)


def _skipped_step(rng: random.Random, steps: list[Step], answer: int):
    used_later = [i for i in range(len(steps) - 1) if any(
        steps[i].c in (st.a, st.b) for st in steps[i + 1 :])]
    if used_later and rng.random() < 0.5:
        i = rng.choice(used_later)  # a leap: the result appears from nowhere
        return steps[:i] + steps[i + 1 :], answer
    out = steps[:-1]  # the last operation is forgotten
    return out, (out[-1].c if out else steps[0].a)


def _wrong_final(rng: random.Random, steps: list[Step], answer: int):
    return steps, wrong_value(rng, answer)


_INJECT = {
    "wrong_intermediate": _wrong_intermediate,
    "skipped_step": _skipped_step,
    "wrong_final": _wrong_final,
}


def inject(rng: random.Random, steps: list[Step], answer: int, mistake: str):
    """Apply one mistake class; returns (steps, answer) or None if it does not apply."""
    return _INJECT[mistake](rng, list(steps), answer)


def noisy_chain(rng: random.Random, problem: Problem, mistake_rate: float = 0.2,
                modes: tuple[str, ...] = ("think", "post")) -> Chain:
    """One chain for ``problem`` on a random path and format, wrong with probability ``mistake_rate``."""
    solution = teach(problem)
    steps = list(rng.choice(solution.paths))
    answer, mistake = solution.answer, None
    if rng.random() < mistake_rate:
        mistake = rng.choice(MISTAKES)
        injected = inject(rng, steps, answer, mistake)
        if injected is None:
            mistake = "wrong_final"
            injected = inject(rng, steps, answer, mistake)
        steps, answer = injected
    mode = rng.choice(modes)
    return Chain(problem, mode, render_completion(str(answer), steps_text(steps), mode), mistake)
