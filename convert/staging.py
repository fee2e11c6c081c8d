"""Temporary outputs in ``--out``, renamed into place only once every step succeeded.

Both converter paths (HF source in ``pipeline``, GGUF source in ``requantize``)
write through one ``Staging``, so ``--out`` never holds a half-written model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Staging:
    """Temporary files in ``out``; ``commit`` renames the kept ones, ``discard`` removes all."""

    out: Path
    tmp: dict[str, Path] = field(default_factory=dict)  # final file name -> temporary path

    def path(self, final_name: str) -> Path:
        p = self.out / f".{final_name}.{os.getpid()}.partial"
        self.tmp[final_name] = p
        return p

    def commit(self, keep: list[str]) -> None:
        for final in keep:
            os.replace(self.tmp.pop(final), self.out / final)
        self.discard()

    def discard(self) -> None:
        for p in self.tmp.values():
            p.unlink(missing_ok=True)
        self.tmp.clear()
