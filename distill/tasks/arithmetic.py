"""arithmetic: the tiny student's own grammar (``distill.problems``) as a task.

The solver, noise and filter stay in ``distill.problems``, ``teacher``, ``noise``
and ``filter`` (and ``distill.data.make_dataset`` still makes the phase mixes,
byte-identical for a seed); this module is their face in the task table.
Train problems come from the 'train' side of the hash split; calib and test
from the held-out side, halved by a second hash so they never meet.
"""

from __future__ import annotations

import hashlib
import random

from thinkling.distill import problems as ap
from thinkling.distill.filter import parse_steps, verify_steps
from thinkling.distill.noise import MISTAKES, inject
from thinkling.distill.tasks.base import SPLITS, Chain, Problem, TaskError
from thinkling.distill.teacher import STRATEGIES, Strategy, solve


def strategy_name(s: Strategy) -> str:
    """A short stable name of a teacher strategy: 'written', 'written+mul:tens+add:tens', ..."""
    parts = [s.order] + (["lazy"] if s.lazy else []) + ([f"mul:{s.split_mul}"] if s.split_mul else []) \
        + ([f"add:{s.split_add}"] if s.split_add else []) + (["commute"] if s.commute else [])
    return "+".join(parts)


def _held_out_half(p: ap.Problem) -> str:
    digest = hashlib.blake2b(f"calib/{p.text}".encode(), digest_size=8).digest()
    return "calib" if digest[0] % 2 == 0 else "test"


def _problem_of(problem: Problem) -> ap.Problem:
    return ap.Problem(tuple(problem.meta["numbers"]), tuple(problem.meta["ops"]))


class Arithmetic:
    name = "arithmetic"
    check = "number"
    paths = tuple(strategy_name(s) for s in STRATEGIES)

    def sample(self, split: str, n: int, seed: int) -> list[Problem]:
        """``n`` distinct problems of ``split``, 1 to 4 operations in turn."""
        if split not in SPLITS:
            raise TaskError(split, SPLITS, what=f"split of {self.name}")
        rng = random.Random(f"{self.name}/{split}/{seed}")
        out: list[Problem] = []
        seen: set[str] = set()
        while len(out) < n:
            n_ops = len(out) % 4 + 1
            p = ap.sample_split_problem(rng, n_ops, "train" if split == "train" else "eval")
            if p.text in seen or (split != "train" and _held_out_half(p) != split):
                continue
            seen.add(p.text)
            out.append(Problem(f"{self.name}/{split}/{seed}/{len(out)}", self.name, split, f"{n_ops} ops",
                               p.text, str(p.value), self.check,
                               {"numbers": list(p.numbers), "ops": list(p.ops)}))
        return out

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        """Up to ``k`` distinct teacher paths, the canonical precedence path first."""
        p, out, seen = _problem_of(problem), [], set()
        for s in STRATEGIES:
            steps = solve(p, s)
            if steps is None or tuple(steps) in seen:
                continue
            seen.add(tuple(steps))
            out.append(Chain(strategy_name(s), [st.text for st in steps], problem.answer))
            if len(out) == k:
                break
        return out

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        """``distill.filter``'s verdict: None to keep, else its reason."""
        steps = parse_steps(chain.text)
        if steps is None:
            return "malformed step line"
        if not chain.answer.strip().isdigit():
            return "answer is not an integer"
        verdict = verify_steps(_problem_of(problem), steps, int(chain.answer))
        return None if verdict.ok else verdict.reason

    def score(self, problem: Problem, answer: str) -> bool:
        """The shared ``number`` checker."""
        from thinkling.bench.tasksets import score

        return score(problem.row(), answer)

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        """One of ``distill.noise``'s realistic mistakes, in the chain's own steps."""
        steps = parse_steps(chain.text)
        if not steps:
            return None
        mistake = rng.choice(MISTAKES)
        injected = inject(rng, steps, int(chain.answer), mistake) or \
            inject(rng, steps, int(chain.answer), "wrong_final")
        bad_steps, bad_answer = injected
        return Chain(chain.path, [st.text for st in bad_steps], str(bad_answer))


TASK = Arithmetic()
