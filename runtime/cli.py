"""``thinkling`` command line: the edge that parses flags, calls the library and
translates typed errors into one line on stderr and a non-zero exit code.

Subcommands that belong to other subsystems (serve, convert, calibrate) live in
their own modules and register themselves through ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import ThinklingError
from .extras import missing_extra

EXIT_CODES = {"model_not_found": 3, "invalid_model_file": 4, "context_length_exceeded": 5,
              "invalid_request": 2, "cancelled": 130, "busy": 6, "missing_extra": 7}

# subcommand modules owned by other subsystems; each has register(subparsers)
_EXTERNAL = ["runtime.cli_ask", "runtime.server.cli", "convert.cli", "bench.calibrate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinkling",
                                     description="On-device runtime for small distilled reasoning students.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    register_subcommands(parser.add_subparsers(dest="command", required=True), _EXTERNAL)
    return parser


def register_subcommands(sub, module_names: list[str]) -> None:
    """Let each module add its subcommand(s) through ``register(subparsers)``.

    A module that is not present in this install is skipped; an ImportError
    raised *inside* a present module is a real error and propagates.
    """
    for name in module_names:
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            missing = getattr(e, "name", "") or ""
            if missing and (missing == name or name.startswith(missing)):
                continue
            raise
        module.register(sub)


def fail(message: str, code: int = 1) -> int:
    print(f"thinkling: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ThinklingError as e:
        return fail(e.message, EXIT_CODES.get(e.code, 1))
    except ModuleNotFoundError as e:  # an optional package this install lacks
        extra = missing_extra(e, feature=f"thinkling {args.command}")
        if extra is None:
            raise
        return fail(extra.message, EXIT_CODES[extra.code])
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        return 0
    except OSError as e:
        return fail(str(e), 1)


if __name__ == "__main__":
    sys.exit(main())
