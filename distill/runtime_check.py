"""Record the student's accuracy through the runtime on a small fixed sample (no torch).

    python -m distill.runtime_check --model arith-student

Runs every 5th task of ``bench/tasks/arith-test.jsonl`` greedily in the ``off`` and
``on`` modes on the registered GGUF and writes ``runtime_check_sample.json`` next to
it (temp name, then rename). ``tests/test_student.py`` replays the same tasks and
must land within a few points of what is recorded here.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from bench.files import write_text_atomic
from bench.modes import load_tasks, run_mode
from runtime import Engine, EngineConfig, models

EVERY = 5
MODES = ("off", "on")


def record(model: str = "arith-student", tasks: str = "arith-test", max_tokens: int = 160) -> dict:
    """Measure and write the check sample; returns what was written."""
    sample = load_tasks(tasks)[::EVERY]
    with Engine(model, EngineConfig(n_ctx=256, n_threads=1, queue_size=2)) as eng:
        path = Path(eng.info().path)
        accuracy = {}
        for mode in MODES:
            outcomes = run_mode(eng, sample, mode, max_tokens)
            accuracy[mode] = sum(o.correct for o in outcomes) / len(outcomes)
    rec = {
        "note": (f"greedy accuracy of {path.name} through the runtime on every {EVERY}th task of "
                 f"bench/tasks/{tasks}.jsonl; recorded {datetime.date.today()} by "
                 "python -m distill.runtime_check"),
        "accuracy": accuracy,
        "tasks": sample,
    }
    write_text_atomic(path.parent / "runtime_check_sample.json", json.dumps(rec, indent=1) + "\n")
    return rec


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="arith-student", choices=models.registered_names())
    parser.add_argument("--tasks", default="arith-test")
    args = parser.parse_args(argv)
    rec = record(args.model, args.tasks)
    print(json.dumps(rec["accuracy"]))


if __name__ == "__main__":
    main()
