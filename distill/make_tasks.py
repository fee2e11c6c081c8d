"""Write the labelled arithmetic task sets that `thinkling calibrate` and
`bench modes` read from bench/tasks/ (dev-time; the pure-Python teacher, no torch).
It lives in distill/ so that distill depends on bench and never the reverse.

Both sets come from the held-out side of distill's hash split (never trained
on); the calibration and test sets are disjoint from each other.

    python -m thinkling.distill.make_tasks
"""

from __future__ import annotations

import json
import random

from thinkling.bench.modes import TASKS_DIR
from thinkling.runtime.files import write_text_atomic

from .problems import sample_split_problem


def make(per_op: int = 50, seed_calib: int = 101, seed_test: int = 202) -> None:
    seen: set[str] = set()
    for name, seed in (("arith-calib", seed_calib), ("arith-test", seed_test)):
        rng = random.Random(seed)
        rows = []
        for n_ops in (1, 2, 3, 4):
            k = 0
            while k < per_op:
                p = sample_split_problem(rng, n_ops, "eval")
                if p.text in seen:
                    continue
                seen.add(p.text)
                q = p.text if rng.random() < 0.5 else f"What is {p.text}?"
                rows.append({"question": q, "answer": p.value, "check": "number", "group": f"{n_ops} ops",
                             "n_ops": n_ops})
                k += 1
        write_text_atomic(TASKS_DIR / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    make()
