"""``manifest.json``: what was converted from what, with hashes, types and parity.

The runtime reads ``files[].path``, ``files[].format`` and ``files[].quant``
(``runtime.models.read_manifest``) instead of guessing from file names.
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from thinkling.runtime.files import write_text_atomic

SCHEMA = 1


@dataclass
class FileEntry:
    path: str  # relative to the manifest
    quant: str
    sha256: str
    size_bytes: int
    format: str = "gguf"
    tensor_types: dict[str, int] = field(default_factory=dict)  # GGML type -> tensor count
    fallbacks: list[dict] = field(default_factory=list)  # [{"tensor", "wanted", "got"}]
    parity: dict | None = None


@dataclass
class Manifest:
    name: str
    architecture: str
    source: dict  # {"path", "files": {name: sha256}, "lora": {...} | None}
    files: list[FileEntry]
    thinking_family: str | None = None
    tools: dict = field(default_factory=dict)
    created: str = ""
    schema: int = SCHEMA

    def to_dict(self) -> dict:
        d = asdict(self)
        order = ["schema", "name", "architecture", "source", "thinking_family", "files", "tools", "created"]
        return {k: d[k] for k in order}

    def file(self, quant: str) -> FileEntry:
        return next(f for f in self.files if f.quant == quant)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(root: Path, files: list[Path]) -> dict[str, str]:
    """``{path relative to root: sha256}``."""
    return {str(f.relative_to(root)): sha256_file(f) for f in files}


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("thinkling", "gguf", "numpy", "llama_cpp_python", "tokenizers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_json_atomic(path: Path, data: dict) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
