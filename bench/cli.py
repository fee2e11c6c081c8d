"""``bench`` command line: parse flags, call the library, translate errors.

Each subcommand lives in its own module with ``register(subparsers)`` (as in
``runtime/cli.py``); add a module name to ``SUBCOMMANDS`` to add one.
"""

from __future__ import annotations

import argparse
import logging
import sys

from thinkling.runtime.cli import register_subcommands
from thinkling.runtime.errors import ThinklingError
from thinkling.runtime.extras import missing_extra

# subcommand modules; each has register(subparsers). "thinkling.bench.modes_cli" is the
# thinking-controller's `bench modes`; it is skipped until it exists.
SUBCOMMANDS = ["thinkling.bench.latency_cli", "thinkling.bench.modes_cli", "thinkling.bench.speculative", "thinkling.bench.contend", "thinkling.bench.soak_cli",
               "thinkling.bench.http_cost", "thinkling.bench.tasks_cli", "thinkling.bench.state_cost"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Benchmarks for thinkling.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    register_subcommands(parser.add_subparsers(dest="command", required=True), SUBCOMMANDS)
    return parser


def fail(message: str, code: int = 1) -> int:
    print(f"bench: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded with results
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ThinklingError as e:
        return fail(e.message, {"model_not_found": 3, "missing_extra": 7}.get(e.code, 1))
    except ModuleNotFoundError as e:  # an optional package this install lacks
        extra = missing_extra(e, feature=f"bench {args.command}")
        if extra is None:
            raise
        return fail(extra.message, 7)
    except ValueError as e:  # bad flag values, a bad --prompts file
        return fail(str(e), 2)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except OSError as e:
        return fail(str(e), 1)


if __name__ == "__main__":
    sys.exit(main())
