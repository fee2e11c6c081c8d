"""The absolute imports written in the project's source files, read with ``ast`` (nothing is
imported): what the layering and namespace tests check."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def absolute_imports(*folders: str) -> Iterator[tuple[str, str]]:
    """``(path relative to the checkout, imported module)`` for every ``import X`` and
    ``from X import ...`` (relative imports excluded) in the ``.py`` files under ``folders``."""
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                else:
                    continue
                yield from ((str(path.relative_to(ROOT)), n) for n in names)
