"""Record the student's accuracy through the runtime on a small fixed sample (no torch).

    python -m thinkling.distill.runtime_check --model arith-student

Runs every 5th task of ``bench/tasks/arith-test.jsonl`` greedily in the ``off`` and
``on`` modes through the one evaluator (``distill.evaluate``) and writes
``runtime_check_sample.json`` next to the model file (temp name, then rename).
``tests/test_student.py`` replays the same tasks and must land within a few points
of what is recorded here.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.bench.tasksets import load_tasks
from thinkling.distill.evaluate import EvalOptions, evaluate_rows
from thinkling.runtime import models

EVERY = 5
MODES = ("off", "on")


def record(model: str = "arith-student", tasks: str = "arith-test", max_tokens: int = 160) -> dict:
    """Measure and write the check sample; returns what was written."""
    sample = load_tasks(tasks)[::EVERY]
    opts = EvalOptions(modes=MODES, max_tokens=max_tokens, threads=1, n_ctx=256)
    rec = evaluate_rows(model, [{**t, "source": tasks} for t in sample], opts, tasks=[tasks])
    path = Path(models.resolve(model).path)
    out = {
        "note": (f"greedy accuracy of {path.name} through the runtime on every {EVERY}th task of "
                 f"bench/tasks/{tasks}.jsonl; recorded {datetime.date.today()} by "
                 "python -m thinkling.distill.runtime_check"),
        "accuracy": {m: rec["overall"]["modes"][m]["accuracy"] for m in MODES},
        "tasks": sample,
    }
    write_text_atomic(path.parent / "runtime_check_sample.json", json.dumps(out, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arith-student", choices=models.registered_names())
    parser.add_argument("--tasks", default="arith-test")
    args = parser.parse_args(argv)
    rec = record(args.model, args.tasks)
    print(json.dumps(rec["accuracy"]))


if __name__ == "__main__":
    main()
