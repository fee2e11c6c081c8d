"""Temporary outputs in ``--out``, renamed into place only once every step succeeded.

Both converter paths (HF source in ``pipeline``, GGUF source in ``requantize``)
write through one ``Staging``, so ``--out`` never holds a half-written model.
ONNX decoders are folders (``convert.onnx``); they are staged beside the GGUF
files and renamed in the same ``commit``, after every check.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir():
        shutil.rmtree(p, ignore_errors=True)
    else:
        p.unlink(missing_ok=True)


def sweep_stale(out: Path) -> list[Path]:
    """Remove temporary files and folders left in ``out`` by runs that died (SIGKILL, power
    loss): ``.<name>.<pid>.partial`` whose pid is gone. A live run's are kept."""
    removed = []
    for p in out.glob(".*.partial") if out.is_dir() else []:
        pid = p.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _remove(p)
            removed.append(p)
    return removed


@dataclass
class Staging:
    """Temporary files and folders in ``out``; ``commit`` renames the kept ones, ``discard``
    removes all. Creating one sweeps what dead runs left behind in ``out``."""

    out: Path
    tmp: dict[str, Path] = field(default_factory=dict)  # final name -> temporary path

    def __post_init__(self) -> None:
        sweep_stale(self.out)

    def path(self, final_name: str) -> Path:
        p = self.out / f".{final_name}.{os.getpid()}.partial"
        self.tmp[final_name] = p
        return p

    def folder(self, final_name: str) -> Path:
        """A fresh, empty temporary folder that ``commit`` renames to ``out/final_name``."""
        p = self.path(final_name)
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
        return p

    def commit(self, keep: list[str]) -> None:
        for final in keep:
            tmp, dest = self.tmp.pop(final), self.out / final
            if tmp.is_dir() and dest.is_dir():  # os.replace cannot replace a non-empty folder
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        self.discard()

    def discard(self) -> None:
        for p in self.tmp.values():
            _remove(p)
        self.tmp.clear()
