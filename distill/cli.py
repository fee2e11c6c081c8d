"""``python -m thinkling.distill <command>``: the distillation kit's commands, one module each.

Each command's module adds its subcommand with ``register(sub)`` and points ``func`` at
a function of the parsed flags. That function raises typed errors; this edge turns any
of them into one line, ``python -m thinkling.distill <command>: error: ...``, exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

PROG = "python -m thinkling.distill"


def fail(command: str, message: object) -> NoReturn:
    """Print ``message`` as the one error line of ``command`` and exit with status 2."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command's subparser."""
    # imported here, not at the top: the command modules import ``fail`` from this one
    from thinkling.distill import build, card, evaluate, retention, teach, trainer
    from thinkling.distill.tasks import cli as tasks_cli

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tasks_cli.register(sub)  # tasks, data, export
    teach.register(sub)  # teach
    retention.register(sub)  # general, retention
    evaluate.register(sub)  # evaluate
    card.register(sub)  # card
    trainer.register(sub)  # train
    build.register(sub)  # build
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run its command; a bad input or setup is one line on stderr, exit 2."""
    from thinkling.distill.teach import TeachError
    from thinkling.runtime.errors import ThinklingError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    # the runtime's, the evaluator's and the card's typed errors, TaskError / DataError /
    # RecipeError / CheckpointError (ValueError), a missing file (OSError), the endpoint's
    except (ThinklingError, TeachError, ValueError, OSError) as e:
        fail(args.command, e)
    return 0


def command_main(command: str, argv: list[str] | None = None) -> int:
    """``python -m thinkling.distill.<module>``: the same as ``python -m thinkling.distill <command>``."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])
