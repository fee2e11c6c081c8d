"""Writing a file whole: under a temporary name beside it, then renamed over it.

A reader (or a crash) then never sees half a manifest, profile, JSON record or
figure: ``os.replace`` within one folder is atomic on POSIX and Windows. A leaf
module (standard library only) so every layer can use it: runtime, convert,
bench and distill.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for the caller to write a file to; on a
    clean exit it is renamed over ``path``, on an error removed (``path`` untouched).
    The name carries the process id, so two processes writing the same file do not
    share a temporary."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
