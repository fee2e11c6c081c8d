"""A GGUF source requantized by llama.cpp: the head type, the checks against
the source, and the refusals, on the committed arith-student Q8_0 GGUF (small:
hidden 128) and, for the head-type refusal, on the embedded Gemma's shape."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from thinkling.convert import errors as E
from thinkling.convert.pipeline import ConvertOptions, convert
from thinkling.convert.quantize import tensor_types

ROOT = Path(__file__).resolve().parent.parent
STUDENT = ROOT / "distill/artifacts/arith-student/gguf/arith-student-q8_0.gguf"
FIXTURE = ROOT / "tests/fixtures/convert/llama-spm"


@pytest.fixture
def source(tmp_path) -> Path:
    """A copy of the student's GGUF with its thinkling.json (so the original is never touched)."""
    d = tmp_path / "src"
    d.mkdir()
    shutil.copy(STUDENT, d / STUDENT.name)
    shutil.copy(STUDENT.parent / "thinkling.json", d / "thinkling.json")
    return d / STUDENT.name


def test_same_types_copy_every_tensor_exactly(source, tmp_path):
    m = convert(source, tmp_path / "out", options=ConvertOptions(gguf="q8_0", head_type="q8_0", check=True,
                                                                  threads=2))
    (entry,) = m.files
    assert entry.path == "arith-student-q8_0-q8_0-head-q8_0.gguf"
    assert entry.parity["max_abs_diff"] == 0 and entry.parity["top1_agreement"] == 1.0
    assert entry.parity["prompts"] > 20  # every position of the parity prompts, not only the last
    assert tensor_types(tmp_path / "out" / entry.path) == tensor_types(source)


def test_a_smaller_head_changes_only_the_head(source, tmp_path):
    out = tmp_path / "out"
    m = convert(source, out, options=ConvertOptions(gguf="q8_0", head_type="q4_0", check=True, threads=2))
    (entry,) = m.files
    before, after = tensor_types(source), tensor_types(out / entry.path)
    head = ("token_embd.weight", "output.weight")  # this student's head is untied: both change
    assert [before[t] for t in head] == ["Q8_0", "Q8_0"] and [after[t] for t in head] == ["Q4_0", "Q4_0"]
    assert {k: v for k, v in after.items() if k not in head} == {k: v for k, v in before.items() if k not in head}
    assert (out / entry.path).stat().st_size < source.stat().st_size
    assert 0 < entry.parity["max_abs_diff"] and 0 < entry.parity["kl_mean"] < 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["head_types"] == {"token_embd.weight": "Q8_0", "output.weight": "Q8_0"}
    assert manifest["files"][0]["sha256"] and (out / "thinkling.json").is_file()
    assert not list(out.glob(".*partial"))
    # the runtime opens it through the manifest
    from thinkling.runtime import models
    ref = models.resolve(str(out / entry.path))
    assert ref.backend == "llama_cpp" and ref.file_entry["quant"] == "q8_0"


def test_a_head_type_that_does_not_fit_the_rows_is_refused_before_writing(source, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(E.UnsupportedSource, match="divisible by 256.*128 wide"):
        convert(source, out, options=ConvertOptions(gguf="q4_k_m", head_type="q4_k"))
    assert not out.exists()


def test_unknown_head_type(source, tmp_path):
    with pytest.raises(E.UnknownQuant):
        convert(source, tmp_path / "out", options=ConvertOptions(gguf="q8_0", head_type="q3_x"))


def test_a_gguf_source_refuses_onnx_and_an_adapter_that_does_not_fit(source, tmp_path):
    # a GGUF base with an adapter is merged (tests/test_gguf_source.py); this adapter was
    # trained on another model, which is found before anything is written
    with pytest.raises(E.AdapterMismatch, match="shape differs"):
        convert(source, tmp_path / "o1", lora=FIXTURE / "adapter", options=ConvertOptions(gguf="q8_0"))
    # ONNX from a GGUF source rebuilds SentencePiece vocabularies only; this one is byte-level BPE
    with pytest.raises(E.UnsupportedTokenizer, match="SentencePiece"):
        convert(source, tmp_path / "o2", options=ConvertOptions(gguf="q8_0", onnx="fp32"))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_a_truncated_gguf_source_is_a_corrupt_file(source, tmp_path):
    data = source.read_bytes()
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(E.CorruptFile, match="truncated"):
        convert(source, tmp_path / "out", options=ConvertOptions(gguf="q8_0"))
    assert not (tmp_path / "out").exists()


def test_head_type_on_a_direct_output_of_the_hf_path_is_refused(tmp_path):
    with pytest.raises(E.UnsupportedSource, match="head-type"):
        convert(FIXTURE / "base", tmp_path / "out", options=ConvertOptions(gguf="f16,q4_k_m", head_type="q8_0"))
    assert not (tmp_path / "out").exists()


def test_cli_requantizes_and_errors_in_one_line(source, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "thinkling.runtime.cli", "convert", *map(str, args)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    ok = run(source, "--out", tmp_path / "out", "--gguf", "q8_0", "--head-type", "q5_0", "--check")
    assert ok.returncode == 0, ok.stderr
    assert "head-q5_0.gguf" in ok.stdout and "top-1" in ok.stdout
    bad = run(source, "--out", tmp_path / "bad", "--gguf", "q4_k_m", "--head-type", "q6_k")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("thinkling: error:") and len(bad.stderr.strip().splitlines()) == 1
