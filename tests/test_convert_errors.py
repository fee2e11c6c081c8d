"""Bad input to the converter: a typed error with the offending field, one line and a
non-zero exit from the CLI, and nothing half-written in --out."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from thinkling.convert import errors as E
from thinkling.convert.pipeline import ConvertOptions, convert

FIXTURES = Path(__file__).parent / "fixtures" / "convert"


def _copy(tmp_path: Path, fx: str = "llama-spm") -> tuple[Path, Path]:
    shutil.copytree(FIXTURES / fx / "base", tmp_path / "base")
    shutil.copytree(FIXTURES / fx / "adapter", tmp_path / "adapter")
    return tmp_path / "base", tmp_path / "adapter"


def _edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _assert_clean(out: Path, before: set[str] | None = None) -> None:
    """``out`` is absent, or holds exactly what it held before."""
    if before is None:
        assert not out.exists(), list(out.iterdir())
    else:
        assert {p.name for p in out.iterdir()} == before


def test_missing_source_directory(tmp_path):
    with pytest.raises(E.MissingFile) as e:
        convert(tmp_path / "nope", tmp_path / "out")
    assert e.value.path.endswith("nope")
    _assert_clean(tmp_path / "out")


@pytest.mark.parametrize("victim, what", [("config.json", "config"), ("model.safetensors", "weights"),
                                          ("tokenizer.model", "tokenizer")])
def test_missing_files(tmp_path, victim, what):
    base, _ = _copy(tmp_path)
    (base / victim).unlink()
    if victim == "tokenizer.model":
        (base / "tokenizer.json").unlink()
    with pytest.raises(E.MissingFile) as e:
        convert(base, tmp_path / "out")
    assert what in e.value.message
    _assert_clean(tmp_path / "out")


def test_truncated_safetensors(tmp_path):
    base, _ = _copy(tmp_path)
    data = (base / "model.safetensors").read_bytes()
    (base / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(E.CorruptFile, match="truncated") as e:
        convert(base, tmp_path / "out")
    assert e.value.path.endswith("model.safetensors")
    _assert_clean(tmp_path / "out")


def test_garbage_safetensors_header(tmp_path):
    base, _ = _copy(tmp_path)
    (base / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"\0" * 64)
    with pytest.raises(E.CorruptFile, match="JSON"):
        convert(base, tmp_path / "out")


def test_unsupported_architecture(tmp_path):
    base, _ = _copy(tmp_path)
    _edit_json(base / "config.json", architectures=["GPT2LMHeadModel"])
    with pytest.raises(E.UnsupportedArchitecture) as e:
        convert(base, tmp_path / "out")
    assert e.value.arch == "GPT2LMHeadModel" and "LlamaForCausalLM" in e.value.supported


def test_unsupported_rope_scaling(tmp_path):
    base, _ = _copy(tmp_path)
    _edit_json(base / "config.json", rope_parameters={"rope_type": "llama3", "rope_theta": 5e5, "factor": 8.0})
    with pytest.raises(E.UnsupportedArchitecture, match="llama3"):
        convert(base, tmp_path / "out")


def test_adapter_of_another_model(tmp_path):
    with pytest.raises(E.AdapterMismatch) as e:  # qwen2's adapter (vocab 512) on the llama base (vocab 416)
        convert(FIXTURES / "llama-spm/base", tmp_path / "out", lora=FIXTURES / "qwen2-bpe/adapter")
    assert e.value.tensor and e.value.expected != e.value.got
    _assert_clean(tmp_path / "out")


def test_adapter_architecture_recorded_by_peft(tmp_path):
    base, adapter = _copy(tmp_path)
    _edit_json(adapter / "adapter_config.json", auto_mapping={"base_model_class": "Qwen2ForCausalLM"})
    with pytest.raises(E.AdapterMismatch, match="another architecture"):
        convert(base, tmp_path / "out", lora=adapter)


def test_adapter_rank_differs_from_config(tmp_path):
    base, adapter = _copy(tmp_path)
    _edit_json(adapter / "adapter_config.json", r=5, rank_pattern={})
    with pytest.raises(E.AdapterMismatch, match="rank") as e:
        convert(base, tmp_path / "out", lora=adapter)
    assert e.value.expected == 5


def test_adapter_for_a_layer_the_base_lacks(tmp_path):
    from safetensors.numpy import save_file

    base, adapter = _copy(tmp_path, "qwen3-bpe")
    save_file({"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight": np.zeros((4, 64), np.float32),
               "base_model.model.model.layers.7.self_attn.q_proj.lora_B.weight": np.zeros((128, 4), np.float32)},
              str(adapter / "adapter_model.safetensors"))
    with pytest.raises(E.AdapterMismatch, match="no such module"):
        convert(base, tmp_path / "out", lora=adapter)


@pytest.mark.parametrize("change, feature", [({"use_dora": True}, "DoRA"), ({"peft_type": "IA3"}, "IA3"),
                                             ({"lora_bias": True}, "lora_bias")])
def test_unsupported_adapter_features(tmp_path, change, feature):
    base, adapter = _copy(tmp_path)
    _edit_json(adapter / "adapter_config.json", **change)
    with pytest.raises(E.UnsupportedAdapter) as e:
        convert(base, tmp_path / "out", lora=adapter)
    assert feature in e.value.feature


def test_missing_adapter_weights(tmp_path):
    base, adapter = _copy(tmp_path)
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(E.MissingFile):
        convert(base, tmp_path / "out", lora=adapter)


def test_unknown_output_type(tmp_path):
    with pytest.raises(E.UnknownQuant) as e:
        convert(FIXTURES / "llama-spm/base", tmp_path / "out", options=ConvertOptions(gguf="f16,q3_xs"))
    assert e.value.quant == "q3_xs" and "q4_k_m" in e.value.known
    _assert_clean(tmp_path / "out")


def test_failure_while_writing_leaves_out_as_it_was(tmp_path, monkeypatch):
    import thinkling.convert.writer as writer

    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    calls = {"n": 0}
    real = writer.encode

    def failing(w, qtype, name):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(28, "No space left on device")
        return real(w, qtype, name)

    monkeypatch.setattr(writer, "encode", failing)
    with pytest.raises(E.WriteFailed) as e:  # typed, so the CLI prints one line
        convert(FIXTURES / "llama-spm/base", out, options=ConvertOptions(gguf="f16,q8_0"))
    assert "No space left on device" in e.value.message
    _assert_clean(out, {"notes.txt"})


def test_failure_in_kquant_leaves_nothing(tmp_path, monkeypatch):
    import thinkling.convert.pipeline as pipeline

    def failing(src, dst, quant, threads=None, head=None):
        dst.write_bytes(b"GGUF half")
        raise E.QuantizationFailed(quant.name, "simulated")

    monkeypatch.setattr(pipeline, "quantize_kquant", failing)
    with pytest.raises(E.QuantizationFailed):
        convert(FIXTURES / "llama-spm/base", tmp_path / "out", options=ConvertOptions(gguf="f16,q4_k_m"))
    _assert_clean(tmp_path / "out")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "thinkling.runtime.cli", "convert", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_error_is_one_line_and_non_zero(tmp_path):
    base, _ = _copy(tmp_path)
    data = (base / "model.safetensors").read_bytes()
    (base / "model.safetensors").write_bytes(data[:5000])
    r = _cli(str(base), "--out", str(tmp_path / "out"))
    assert r.returncode != 0
    assert r.stderr.startswith("thinkling: error: cannot read") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and "truncated" in r.stderr
    _assert_clean(tmp_path / "out")


def test_cli_converts_and_prints_the_parity_table(tmp_path):
    fx = FIXTURES / "qwen3-bpe"
    r = _cli(str(fx / "base"), "--lora", str(fx / "adapter"), "--out", str(tmp_path), "--gguf", "f16",
             "--check", "--name", "student", "--threads", "2")
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path}/student-f16.gguf" in r.stdout
    assert "top-1" in r.stdout and "student-f16.gguf" in r.stdout.split("top-1")[1]
    assert "tokenization matches the HF tokenizer on the parity prompts: yes" in r.stdout
    assert (tmp_path / "manifest.json").is_file() and (tmp_path / "thinkling.json").is_file()
