"""``python -m thinkling.distill <command>``: the distillation kit's commands, one module each."""

from __future__ import annotations

import argparse
import sys

from thinkling.distill import build, card, evaluate, retention, teach, trainer
from thinkling.distill.tasks import cli as tasks_cli
from thinkling.distill.tasks.base import TaskError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m thinkling.distill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tasks_cli.register(sub)  # tasks, data, export
    teach.register(sub)  # teach
    retention.register(sub)  # general, retention
    evaluate.register(sub)  # evaluate
    card.register(sub)  # card
    trainer.register(sub)  # train
    build.register(sub)  # build
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (TaskError, ValueError, OSError) as e:
        print(f"python -m thinkling.distill {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
