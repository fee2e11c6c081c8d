"""The table of registered students (``runtime/registry.json``): one row per student.

The table is package data of ``runtime`` so that every install, editable or wheel,
carries it beside the code that reads it, with nothing to discover; its paths are
relative to the folder holding thinkling's subpackage folders (the checkout, or
site-packages/thinkling for a wheel), where ``distill``'s shipped artifacts also land. JSON,
not TOML, because ``tomllib`` needs Python 3.11 and the runtime supports 3.10.

A row is either a shipped file (``kind: "file"``) or a student assembled on first
use (``kind: "assembled"``) from a registered base and, optionally, a committed
LoRA adapter folder; the merge itself belongs to the converter, reached through
the ``thinkling.assemblers`` entry point (``runtime.models``). Rows are checked
when the table is read: a malformed row is a ``RegistryRowError`` naming it, never
a KeyError at first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import InvalidModelFile

TABLE = Path(__file__).with_name("registry.json")
KINDS = ("file", "assembled")
BACKENDS = ("llama_cpp", "onnx")

_REQUIRED = ("name", "description", "kind", "backend", "quant")
_OPTIONAL = ("aliases", "path", "base", "adapter", "stem")


class RegistryRowError(InvalidModelFile):
    """A row of the registry table that cannot be used; ``row`` is its index, ``name`` its
    name when it has one, ``field`` the offending key."""

    def __init__(self, table: Path, row: int, name: str | None, field: str | None, reason: str):
        self.row = row
        self.name = name
        self.field = field
        where = f"row {row}" + (f" ({name})" if name else "")
        super().__init__(str(table), f"{where}: {reason}")


@dataclass(frozen=True)
class StudentRow:
    """One registered student, as the table states it."""

    name: str
    description: str
    kind: str  # "file" | "assembled"
    backend: str  # "llama_cpp" | "onnx"
    quant: str  # the GGUF type or ONNX quant of the model file, e.g. q8_0, int4
    aliases: tuple[str, ...] = field(default_factory=tuple)
    path: str | None = None  # kind "file": the shipped model file
    base: str | None = None  # kind "assembled": a registered model name
    adapter: str | None = None  # kind "assembled": the LoRA adapter folder (none: the base converted)
    stem: str | None = None  # the model file's stem, when it is not the name

    @property
    def file_stem(self) -> str:
        return self.stem or self.name


def load_table(path: Path = TABLE) -> list[StudentRow]:
    """Read and check every row of the table at ``path``.

    Raises ``RegistryRowError`` for the first bad row (unknown or missing key, wrong
    type, unknown kind or backend, a name used twice, a base that is not registered)
    and ``InvalidModelFile`` when the file is not a JSON table at all.
    """
    try:
        data = json.loads(Path(path).read_text())
        raw_rows = data["students"]
        if not isinstance(raw_rows, list):
            raise TypeError("'students' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidModelFile(str(path), f"not a registry table: {e}") from None
    rows = [_row(path, i, raw) for i, raw in enumerate(raw_rows)]
    _check_names(path, rows)
    return rows


def _row(table: Path, i: int, raw) -> StudentRow:
    name = raw.get("name") if isinstance(raw, dict) and isinstance(raw.get("name"), str) else None

    def bad(key: str | None, reason: str) -> RegistryRowError:
        return RegistryRowError(table, i, name, key, reason)

    if not isinstance(raw, dict):
        raise bad(None, "not an object")
    unknown = sorted(set(raw) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise bad(unknown[0], f"unknown key {unknown[0]!r}")
    for key in _REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise bad(key, f"{key!r} must be a non-empty string")
    for key in ("path", "base", "adapter", "stem"):
        if key in raw and (not isinstance(raw[key], str) or not raw[key].strip()):
            raise bad(key, f"{key!r} must be a non-empty string")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
        raise bad("aliases", "'aliases' must be a list of non-empty strings")
    if raw["kind"] not in KINDS:
        raise bad("kind", f"kind {raw['kind']!r} is not one of {', '.join(KINDS)}")
    if raw["backend"] not in BACKENDS:
        raise bad("backend", f"backend {raw['backend']!r} is not one of {', '.join(BACKENDS)}")
    for key in ("path", "adapter"):
        if key in raw and (PurePosixPath(raw[key]).is_absolute() or ".." in PurePosixPath(raw[key]).parts):
            raise bad(key, f"{key!r} must be relative to the install root, inside it")
    if raw["kind"] == "file":
        if "path" not in raw:
            raise bad("path", "a 'file' row needs 'path'")
        extra = [k for k in ("base", "adapter", "stem") if k in raw]
        if extra:
            raise bad(extra[0], f"a 'file' row takes no {extra[0]!r}")
    else:
        if "base" not in raw:
            raise bad("base", "an 'assembled' row needs 'base'")
        if "path" in raw:
            raise bad("path", "an 'assembled' row takes no 'path' (it is built into THINKLING_HOME)")
        if raw["backend"] == "llama_cpp" and "adapter" not in raw:
            raise bad("adapter", "an assembled GGUF needs an 'adapter' (without one it is its base)")
    return StudentRow(**{**raw, "aliases": tuple(aliases)})


def _check_names(table: Path, rows: list[StudentRow]) -> None:
    seen: set[str] = set()
    for i, row in enumerate(rows):
        for name in (row.name, *row.aliases):
            if name in seen:
                raise RegistryRowError(table, i, row.name, "name", f"the name {name!r} is used twice")
            seen.add(name)
    for i, row in enumerate(rows):
        if row.base == row.name or row.base in row.aliases:
            raise RegistryRowError(table, i, row.name, "base", "a row cannot be its own base")


def check_references(table: Path, rows: list[StudentRow], code_names: set[str]) -> None:
    """No row takes a name of a model registered in code (``code_names``: the embedded
    default and its aliases), and every ``base`` names a registered model."""
    known = set(code_names) | {n for row in rows for n in (row.name, *row.aliases)}
    for i, row in enumerate(rows):
        taken = [n for n in (row.name, *row.aliases) if n in code_names]
        if taken:
            raise RegistryRowError(table, i, row.name, "name", f"the name {taken[0]!r} is already registered")
        if row.base is not None and row.base not in known:
            raise RegistryRowError(table, i, row.name, "base", f"base {row.base!r} is not a registered model")
