"""Assemble a registered student on first use: a GGUF base + a committed LoRA adapter -> one GGUF.

The repository ships the adapter (a few MB) and a ``student.json`` recipe, not
the merged model (hundreds of MB). The runtime's registry (a row of
``runtime/registry.json``) calls ``assemble_registered`` through the
``thinkling.assemblers`` entry point (pyproject.toml) the first time the student
is asked for; the runtime never imports this package. The recipe names
the base (a registered model), the adapter's sha256 and the GGUF type; the
adapter is checked against its hash before anything is merged, so a truncated
or swapped adapter is a typed error. The merge is ``convert()`` itself into a
temporary folder beside the target, renamed into place only when complete:
a crash or an error never leaves a half-assembled model behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from thinkling.runtime.files import write_bytes_atomic

from .manifest import sha256_file

if TYPE_CHECKING:
    from thinkling.runtime.models import AssemblyRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudentRecipe:
    """``student.json``: how to rebuild a student from its base and its adapter."""

    name: str
    base: str  # a registered model name, e.g. gemma-3-270m
    adapter: Path  # the PEFT adapter folder
    adapter_sha256: str  # of adapter_model.safetensors
    quant: str  # the GGUF type written, e.g. q8_0
    profile: Path | None = None  # the calibrated thinking profile, installed beside the model

    @classmethod
    def load(cls, path: Path) -> "StudentRecipe":
        data = json.loads(path.read_text())
        profile = path.parent / data["profile"] if data.get("profile") else None
        return cls(name=data["name"], base=data["base"], adapter=path.parent / data["adapter"],
                   adapter_sha256=data["adapter_sha256"], quant=data["quant"], profile=profile)

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.quant}.gguf"


def assemble_student(recipe: StudentRecipe, base_gguf: Path, target_dir: Path) -> Path:
    """Merge ``recipe.adapter`` into ``base_gguf`` and write ``target_dir/<name>-<quant>.gguf``
    (with its manifest and thinkling.json). Returns the model file.

    Raises ``InvalidModelFile`` when the adapter is missing, truncated or not the
    recorded one, and the converter's typed errors when it does not fit the base.
    """
    from .pipeline import ConvertOptions

    _check_adapter(recipe)
    final = target_dir / recipe.file_name
    if final.is_file() and _built_from(target_dir, recipe):
        install_profile(recipe, target_dir)
        return final
    log.info("assembling %s from %s + %s (first use)", recipe.name, base_gguf.name, recipe.adapter)
    _convert_into(target_dir, base_gguf, recipe.adapter,
                  ConvertOptions(gguf=recipe.quant, name=recipe.name, threads=os.cpu_count() or 2),
                  lambda tmp: install_profile(recipe, tmp))
    return final


def _check_adapter(recipe: StudentRecipe) -> None:
    """``InvalidModelFile`` unless the adapter's weights are there and hash to the recorded sha256."""
    from thinkling.runtime.errors import InvalidModelFile

    weights = recipe.adapter / "adapter_model.safetensors"
    if not weights.is_file():
        raise InvalidModelFile(str(weights), f"the adapter of {recipe.name} is missing")
    digest = sha256_file(weights)
    if digest != recipe.adapter_sha256:
        raise InvalidModelFile(str(weights), f"sha256 {digest[:12]}… differs from the recorded "
                                             f"{recipe.adapter_sha256[:12]}… (truncated or replaced adapter)")


def _convert_into(target_dir: Path, base_gguf: Path, lora: Path | None, options,
                  finish: Callable[[Path], None]) -> None:
    """``convert()`` into a temporary folder beside ``target_dir``, ``finish(tmp)`` (e.g. the
    profile), then one rename into place: a crash or an error leaves no half-built model."""
    from .pipeline import convert

    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = target_dir.with_name(f".{target_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(base_gguf, tmp, lora=lora, options=options)
        finish(tmp)
        shutil.rmtree(target_dir, ignore_errors=True)  # a stale folder without the model file
        os.replace(tmp, target_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _built_from(target_dir: Path, recipe: StudentRecipe) -> bool:
    """Was the model in ``target_dir`` merged from this adapter? (a retrained adapter re-assembles)"""
    try:
        manifest = json.loads((target_dir / "manifest.json").read_text())
        files = manifest["source"]["lora"]["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return files.get("adapter_model.safetensors") == recipe.adapter_sha256


def install_profile(recipe: StudentRecipe, target_dir: Path) -> None:
    """Put the recipe's calibrated profile beside the model (``thinking_profile.json``),
    replacing an older copy atomically; the model file itself is not touched."""
    if recipe.profile is None or not recipe.profile.is_file():
        return
    dest = target_dir / "thinking_profile.json"
    data = recipe.profile.read_bytes()
    if dest.is_file() and dest.read_bytes() == data:
        return
    write_bytes_atomic(dest, data)


@dataclass(frozen=True)
class OnnxRecipe:
    """An ONNX decoder built on first use from a registered GGUF (and optionally a LoRA adapter)."""

    name: str  # the file stem: <target>/<name>-onnx-<quant>/<name>-<quant>.onnx
    quant: str  # an ONNX quant, "int4" or "fp32"
    student: StudentRecipe | None = None  # the adapter to merge (and the profile to install), if any

    def model_path(self, target_dir: Path) -> Path:
        from thinkling.runtime.models import onnx_model_file

        return onnx_model_file(target_dir, self.name, self.quant)


def assemble_onnx(recipe: OnnxRecipe, base_gguf: Path, target_dir: Path) -> Path:
    """Convert ``base_gguf`` (+ the student's adapter) to an ONNX folder in ``target_dir``
    with ``convert()``, into a temporary folder renamed into place when complete.
    Returns the ``.onnx`` file. Needs the ``onnx`` extra (onnx, onnxruntime, tokenizers).
    """
    from thinkling.runtime.extras import require

    from .pipeline import ConvertOptions

    student = recipe.student
    final = recipe.model_path(target_dir)
    if final.is_file() and (student is None or _built_from(target_dir, student)):
        if student is not None:
            install_profile(student, final.parent)
        return final
    require(f"assembling {recipe.name} (ONNX)", "onnx", "onnx", "onnxruntime", "onnx_ir", "tokenizers")
    if student is not None:
        _check_adapter(student)
    log.info("converting %s to ONNX %s (first use; about a minute and a few GB of memory for 270M)",
             base_gguf.name, recipe.quant)

    def finish(tmp: Path) -> None:
        if student is not None:
            install_profile(student, recipe.model_path(tmp).parent)

    _convert_into(target_dir, base_gguf, student.adapter if student else None,
                  ConvertOptions(gguf="", onnx=recipe.quant, name=recipe.name, threads=os.cpu_count() or 2), finish)
    return final


def assemble_registered(request: "AssemblyRequest") -> Path:
    """The ``assembled`` entry of ``thinkling.assemblers``: build one registry row's model.

    The adapter's recipe is the ``student.json`` that ``distill build`` writes beside the
    adapter folder (its sha256 and calibrated profile); the row's name, stem and quant win
    over the recipe's, its base must match. A row without an adapter converts the base
    alone (ONNX only). Returns ``request.model_file``.
    """
    student = _recipe_beside(request) if request.adapter is not None else None
    if request.backend == "onnx":
        built = assemble_onnx(OnnxRecipe(name=request.stem, quant=request.quant, student=student),
                              request.base, request.target_dir)
    elif student is None:
        from thinkling.runtime.errors import InvalidModelFile

        raise InvalidModelFile(str(request.base), f"{request.name}: an assembled GGUF needs an adapter")
    else:
        built = assemble_student(replace(student, name=request.stem, quant=request.quant),
                                 request.base, request.target_dir)
    if built != request.model_file:  # the runtime and the converter disagree on the layout: a bug
        raise RuntimeError(f"assembled {built}, the runtime expects {request.model_file}")
    return built


def _recipe_beside(request: "AssemblyRequest") -> StudentRecipe:
    """``student.json`` in the adapter folder's parent, checked against the registry row."""
    from thinkling.runtime.errors import InvalidModelFile, ModelNotFound

    path = request.adapter.parent / "student.json"
    if not path.is_file():
        raise ModelNotFound(request.name, reason=f"not built yet: its recipe {path} is missing")
    try:
        recipe = StudentRecipe.load(path)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidModelFile(str(path), f"unreadable student recipe: {e!r}") from None
    if recipe.adapter.resolve() != request.adapter.resolve():
        raise InvalidModelFile(str(path), f"names the adapter {recipe.adapter}, the registry row {request.adapter}")
    if recipe.base != request.base_name:
        raise InvalidModelFile(str(path), f"was trained on {recipe.base!r}, the registry row says {request.base_name!r}")
    return recipe
