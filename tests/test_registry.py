"""The registry is data: every registered student is a checked row of runtime/registry.json,
first-use assembly comes from the converter through an entry point, and the runtime imports
no package above it (checked statically and in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from source_imports import absolute_imports

from thinkling.runtime import models
from thinkling.runtime.cli import main as thinkling
from thinkling.runtime.errors import InvalidModelFile, MissingExtra, ModelNotFound
from thinkling.runtime.registry import TABLE, RegistryRowError, StudentRow, load_table

ROOT = Path(__file__).resolve().parent.parent
SKILLS_ADAPTER = ROOT / "distill" / "artifacts" / "skills-gemma" / "adapter"


def _table(tmp_path: Path, rows: list) -> Path:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"students": rows}))
    return path


GOOD = {"name": "s", "description": "d", "kind": "assembled", "backend": "llama_cpp", "quant": "q8_0",
        "base": "gemma-3-270m", "adapter": "distill/artifacts/s/adapter"}


def test_shipped_table_loads_and_every_row_is_usable():
    rows = load_table(TABLE)
    names = {r.name for r in rows}
    assert {"arith-student", "gemma-3-270m-arith", "gemma-3-270m-skills"} <= names
    assert set(models.registered_names()) == names | {models.DEFAULT_MODEL}
    for row in rows:
        if row.kind == "file":  # shipped files are in the checkout (and the wheel: test_install)
            assert (ROOT / row.path).is_file(), row
        elif row.adapter and (ROOT / row.adapter).is_dir():  # a built adapter has the recipe beside it
            assert (ROOT / row.adapter).parent.joinpath("student.json").is_file(), row
    (skills,) = [r for r in rows if "skills-student" in r.aliases]
    assert (skills.name, skills.base, skills.quant, skills.backend) == (
        "gemma-3-270m-skills", "gemma-3-270m", "q8_0", "llama_cpp")


@pytest.mark.parametrize("change, field", [
    ({"kind": "merged"}, "kind"),
    ({"backend": "mlx"}, "backend"),
    ({"quant": ""}, "quant"),
    ({"aliases": "x"}, "aliases"),
    ({"adaptor": "typo"}, "adaptor"),
    ({"adapter": "../../etc"}, "adapter"),
    ({"path": "a.gguf"}, "path"),
    ({"base": None}, "base"),
])
def test_malformed_row_is_a_typed_error_naming_it(tmp_path, change, field):
    row = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(RegistryRowError) as err:
        load_table(_table(tmp_path, [dict(GOOD, name="ok"), row]))
    assert (err.value.row, err.value.name, err.value.field) == (1, "s", field)
    assert "row 1 (s)" in err.value.message and isinstance(err.value, InvalidModelFile)


def test_duplicate_names_and_bad_tables_are_refused(tmp_path):
    with pytest.raises(RegistryRowError, match="used twice"):
        load_table(_table(tmp_path, [GOOD, dict(GOOD, name="t", aliases=["s"])]))
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InvalidModelFile, match="not a registry table"):
        load_table(tmp_path / "broken.json")


def test_unbuilt_student_is_not_found_in_one_line(tmp_path, monkeypatch, capsys):
    """A row whose adapter is not committed yet: listed without a path, not resolvable."""
    monkeypatch.setenv("THINKLING_HOME", str(tmp_path))
    entry = models._assembled_entry(StudentRow(**dict(GOOD, name="unbuilt", adapter="distill/artifacts/nope")))
    assert entry.peek() is None
    with pytest.raises(ModelNotFound, match="not built yet"):
        entry.locate()
    if not SKILLS_ADAPTER.is_dir():  # until the multi-skill adapter is committed
        assert thinkling(["ask", "1 + 1", "--model", "skills-student"]) == 3
        err = capsys.readouterr().err.strip()
        assert err.startswith("thinkling: error: model not found: 'gemma-3-270m-skills': not built yet")
        assert len(err.splitlines()) == 1


def test_models_lists_the_skills_student(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THINKLING_HOME", str(tmp_path))
    assert thinkling(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    skills = rows["gemma-3-270m-skills"]
    assert "skills-student" in skills["description"]
    assert skills["path"] is None  # never assembled by listing; not materialised in this home
    assert thinkling(["models"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("gemma-3-270m-skills "))
    assert "skills-student" in line and "[not materialised]" in line


def test_missing_assembler_entry_point_is_missing_extra(monkeypatch):
    monkeypatch.setattr(models, "entry_points", lambda group: [])
    with pytest.raises(MissingExtra, match=r"pip install 'thinkling\[convert\]'"):
        models._load_assembler("assembled")


_UPWARD = ("thinkling.convert", "thinkling.bench", "thinkling.distill", "thinkling.mobile_bridge")


def test_runtime_source_imports_nothing_above_it():
    offenders = [f"{path}: {n}" for path, n in absolute_imports("runtime")
                 if any(n == u or n.startswith(u + ".") for u in _UPWARD)]
    assert offenders == []


@pytest.mark.slow
def test_first_use_assembly_goes_through_the_entry_point(tmp_path, default_model_path):
    """In a fresh interpreter: importing the runtime and listing/peeking every registered
    student loads no converter module; asking for gemma-3-270m-arith in an empty home
    merges it (through ``thinkling.assemblers``), and only then is ``convert`` imported."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / default_model_path.name).symlink_to(default_model_path)
    script = (
        "import json, sys\n"
        "import thinkling.runtime, thinkling.runtime.models as m, thinkling.runtime.engine\n"
        "m.list_refs(); m.resolve('arith-student'); m.resolve('gemma-3-270m')\n"
        "before = sorted(k for k in sys.modules if k.startswith('thinkling.convert'))\n"
        "ref = m.resolve('gemma-3-270m-arith')\n"
        "print(json.dumps({'before': before, 'after': 'thinkling.convert.assemble' in sys.modules,\n"
        "                  'path': str(ref.path), 'backend': ref.backend,\n"
        "                  'lora': (ref.manifest or {}).get('source', {}).get('lora') is not None}))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"THINKLING_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["before"] == [] and out["after"]
    assert out["path"] == str(tmp_path / "models" / "gemma-3-270m-arith" / "gemma-3-270m-arith-q8_0.gguf")
    assert out["backend"] == "llama_cpp" and out["lora"]
