"""``thinkling`` command line: the edge that parses flags, calls the library and
translates typed errors into one line on stderr and a non-zero exit code.

The runtime's own subcommands (ask, models, serve) live in their modules and
register themselves through ``register(subparsers)``. Other packages (convert,
bench's calibrate) plug theirs in through the ``thinkling.commands`` entry-point
group (pyproject.toml), so this ground floor never imports upward.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import entry_points

from .errors import ThinklingError
from .extras import missing_extra

EXIT_CODES = {"model_not_found": 3, "invalid_model_file": 4, "context_length_exceeded": 5,
              "invalid_request": 2, "cancelled": 130, "busy": 6, "missing_extra": 7}

# the runtime's own subcommand modules; each has register(subparsers)
_OWN = ["thinkling.runtime.cli_ask", "thinkling.runtime.server.cli"]
PLUGIN_GROUP = "thinkling.commands"  # entry points: "<name> = <module>:register"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinkling",
                                     description="On-device runtime for small distilled reasoning students.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    register_subcommands(sub, _OWN)
    register_plugins(sub, PLUGIN_GROUP)
    return parser


def register_plugins(sub, group: str) -> None:
    """Subcommands other installed packages register under the entry-point ``group``
    (sorted by name, so ``--help`` lists them in a stable order)."""
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        module, _, attr = ep.value.partition(":")
        register_subcommands(sub, [module], attr or "register")


def register_subcommands(sub, module_names: list[str], attr: str = "register") -> None:
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
        getattr(module, attr)(sub)


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
