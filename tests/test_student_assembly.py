"""First-use assembly of a registered student: base GGUF + committed adapter -> one GGUF
in THINKLING_HOME, written under a temporary name and renamed; a truncated or
mismatched adapter is a typed error and leaves nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from thinkling.convert.assemble import StudentRecipe, assemble_student
from thinkling.convert.errors import AdapterMismatch
from thinkling.convert.manifest import sha256_file
from thinkling.convert.pipeline import ConvertOptions, convert
from thinkling.runtime.errors import InvalidModelFile

FIXTURES = Path(__file__).parent / "fixtures" / "convert"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base")
    convert(FIXTURES / "gemma3-spm" / "base", out, options=ConvertOptions(gguf="f16", name="g3", threads=2))
    return out / "g3-f16.gguf"


def _recipe(tmp_path: Path, adapter_src: Path, sha: str | None = None) -> StudentRecipe:
    adapter = tmp_path / "recipe" / "adapter"
    shutil.copytree(adapter_src, adapter)
    (adapter / "thinkling.json").write_text(json.dumps({"family": "thinkling-arith"}))
    weights = adapter / "adapter_model.safetensors"
    data = {"name": "tiny-student", "base": "unused", "adapter": "adapter",
            "adapter_sha256": sha or sha256_file(weights), "quant": "q8_0"}
    (tmp_path / "recipe" / "student.json").write_text(json.dumps(data))
    return StudentRecipe.load(tmp_path / "recipe" / "student.json")


def test_assembles_once_with_manifest_and_thinking_format(base, tmp_path):
    recipe = _recipe(tmp_path, FIXTURES / "gemma3-spm" / "adapter")
    target = tmp_path / "home" / "models" / "tiny-student"
    path = assemble_student(recipe, base, target)
    assert path == target / "tiny-student-q8_0.gguf" and path.is_file()
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["files"][0]["sha256"] == sha256_file(path)
    assert manifest["source"]["lora"]["merged_modules"] > 0
    assert json.loads((target / "thinkling.json").read_text())["family"] == "thinkling-arith"
    mtime = path.stat().st_mtime_ns
    assert assemble_student(recipe, base, target) == path and path.stat().st_mtime_ns == mtime  # cached
    assert [p.name for p in target.parent.iterdir()] == ["tiny-student"]  # no temporary left


def test_truncated_adapter_is_a_typed_error_and_leaves_nothing(base, tmp_path):
    recipe = _recipe(tmp_path, FIXTURES / "gemma3-spm" / "adapter")
    weights = recipe.adapter / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    home = tmp_path / "home" / "models"
    with pytest.raises(InvalidModelFile, match="sha256"):
        assemble_student(recipe, base, home / "tiny-student")
    assert not home.exists() or not any(home.iterdir())


def test_adapter_for_another_model_is_refused_and_leaves_nothing(base, tmp_path):
    recipe = _recipe(tmp_path, FIXTURES / "qwen3-bpe" / "adapter")  # its recorded hash is its own
    home = tmp_path / "home" / "models"
    with pytest.raises(AdapterMismatch):
        assemble_student(recipe, base, home / "tiny-student")
    assert not home.exists() or not any(home.iterdir())


def test_listing_models_never_assembles_the_student(tmp_path, monkeypatch):
    from thinkling.runtime import models

    monkeypatch.setenv("THINKLING_HOME", str(tmp_path))
    monkeypatch.setattr("thinkling.convert.assemble.assemble_student",
                        lambda *a, **k: pytest.fail("listing must not assemble"))
    rows = {name: path for name, _, path in models.list_refs()}
    assert "gemma-3-270m-arith" in rows and rows["gemma-3-270m-arith"] is None
    # the default, materialised in this home by listing, is listed once under its registered name
    assert rows["gemma-3-270m"] is not None and "gemma-3-270m-q4_k_m" not in rows


def _request(tmp_path: Path, recipe: StudentRecipe, base: Path, backend: str = "llama_cpp", quant: str = "q8_0",
             stem: str = "tiny-student", base_name: str = "unused"):
    from thinkling.runtime.models import AssemblyRequest, onnx_model_file

    target = tmp_path / "home" / "models" / "tiny"
    model_file = target / f"{stem}-{quant}.gguf" if backend == "llama_cpp" else onnx_model_file(target, stem, quant)
    return AssemblyRequest(name="tiny", stem=stem, backend=backend, quant=quant, base_name=base_name, base=base,
                           adapter=recipe.adapter, target_dir=target, model_file=model_file)


def test_registered_row_assembles_through_the_entry_point(base, tmp_path):
    """The runtime's registry reaches the converter only through ``thinkling.assemblers``."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="thinkling.assemblers") if e.name == "assembled"]
    assemble = ep.load()
    recipe = _recipe(tmp_path, FIXTURES / "gemma3-spm" / "adapter")
    request = _request(tmp_path, recipe, base, stem="tiny-row")  # the row's stem wins over the recipe's name
    assert assemble(request) == request.model_file and request.model_file.is_file()
    manifest = json.loads((request.target_dir / "manifest.json").read_text())
    assert manifest["source"]["lora"]["files"]["adapter_model.safetensors"] == recipe.adapter_sha256


def test_registered_row_needs_its_recipe_and_its_base(base, tmp_path):
    from thinkling.convert.assemble import assemble_registered
    from thinkling.runtime.errors import ModelNotFound

    recipe = _recipe(tmp_path, FIXTURES / "gemma3-spm" / "adapter")
    with pytest.raises(InvalidModelFile, match="trained on 'unused'"):
        assemble_registered(_request(tmp_path, recipe, base, base_name="gemma-3-270m"))
    (recipe.adapter.parent / "student.json").unlink()
    with pytest.raises(ModelNotFound, match="not built yet"):
        assemble_registered(_request(tmp_path, recipe, base))
    assert not (tmp_path / "home").exists()


def test_registered_onnx_row_converts_the_adapter_merged_base(base, tmp_path):
    pytest.importorskip("onnxruntime")
    from thinkling.convert.assemble import assemble_registered

    recipe = _recipe(tmp_path, FIXTURES / "gemma3-spm" / "adapter")
    request = _request(tmp_path, recipe, base, backend="onnx", quant="fp32")
    assert assemble_registered(request) == request.model_file and request.model_file.is_file()
    assert json.loads((request.model_file.parent / "thinkling.json").read_text())["family"] == "thinkling-arith"
