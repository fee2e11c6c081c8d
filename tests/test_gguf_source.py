"""A GGUF file as the converter's source, with a LoRA adapter merged into it (issue 15).

The Gemma-3-shaped fixture (local/global layers, QK-norm, sandwich norms) is first
written to an F32 GGUF by the HF path; that file is then the base. Reading it back must
give the HF tensors exactly (names mapped back, Gemma's ``1 + w`` norms undone), and
GGUF base + adapter must reproduce transformers' golden logits of HF base + adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from thinkling.convert.errors import AdapterMismatch, ConversionError, CorruptFile
from thinkling.convert.gguf_source import GGUFModel
from thinkling.convert.parity import compare, gguf_logits
from thinkling.convert.pipeline import ConvertOptions, convert
from thinkling.convert.source import HFModel

FIXTURES = Path(__file__).parent / "fixtures" / "convert"
FX = FIXTURES / "gemma3-spm"


@pytest.fixture(scope="module")
def f32_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gemma3-f32")
    convert(FX / "base", out, options=ConvertOptions(gguf="f32", name="g3", threads=2))
    return out / "g3-f32.gguf"


def test_tensors_come_back_with_hf_names_and_values(f32_base):
    hf, gg = HFModel(FX / "base"), GGUFModel(f32_base)
    assert set(gg.tensors) == set(hf.tensors) - {"lm_head.weight"}
    for name in hf.tensors:
        if name in gg.tensors:
            np.testing.assert_array_equal(gg.load(name), hf.load(name), err_msg=name)


@pytest.mark.parametrize("fx", ["llama-spm", "qwen3-bpe"])
def test_other_architectures_come_back_too(fx, tmp_path):
    """llama's q/k rows are permuted for llama.cpp's interleaved RoPE; reading undoes it."""
    convert(FIXTURES / fx / "base", tmp_path, options=ConvertOptions(gguf="f32", name="m", threads=2))
    hf, gg = HFModel(FIXTURES / fx / "base"), GGUFModel(tmp_path / "m-f32.gguf")
    for name in gg.tensors:
        np.testing.assert_array_equal(gg.load(name), hf.load(name), err_msg=name)


def test_config_gives_the_same_dimensions(f32_base):
    from thinkling.convert.archs import dims_from_config, spec_for

    hf_cfg = json.loads((FX / "base" / "config.json").read_text())
    gg = GGUFModel(f32_base)
    a = dims_from_config(hf_cfg, spec_for(hf_cfg), 0)
    b = dims_from_config(gg.config, spec_for(gg.config), 0)
    assert a == b


def test_gguf_base_plus_adapter_matches_transformers(f32_base, tmp_path):
    golden = json.loads((FX / "golden.json").read_text())
    ref = np.load(FX / "golden_logits.npy")  # transformers, PEFT merge_and_unload
    m = convert(f32_base, tmp_path / "out", lora=FX / "adapter",
                options=ConvertOptions(gguf="f16,q8_0", name="merged", threads=2, check=True))
    r = compare(gguf_logits(tmp_path / "out" / "merged-f16.gguf", golden["token_ids"]), ref)
    assert r.top1_agreement == 1.0, r
    assert r.max_abs_diff < 0.25 and r.kl_mean < 1e-3, r
    assert m.source["format"] == "gguf" and m.source["lora"]["merged_modules"] > 0
    assert all(f.parity is not None for f in m.files)  # the check ran against the dequantized reference
    # the base's vocabulary is carried key for key
    from gguf import GGUFReader

    def tok_fields(p):
        return {f.name: f.contents() for f in GGUFReader(str(p)).fields.values() if f.name.startswith("tokenizer.")}
    assert tok_fields(tmp_path / "out" / "merged-f16.gguf") == tok_fields(f32_base)


def test_adapter_chat_template_replaces_the_base_one(f32_base, tmp_path):
    from gguf import GGUFReader

    adapter = tmp_path / "adapter"
    shutil.copytree(FX / "adapter", adapter)
    (adapter / "chat_template.jinja").write_text("{{ messages[0]['content'] }}\n")
    convert(f32_base, tmp_path / "out", lora=adapter, options=ConvertOptions(gguf="f16", name="t", threads=2))
    fields = {f.name: f for f in GGUFReader(str(tmp_path / "out" / "t-f16.gguf")).fields.values()}
    assert fields["tokenizer.chat_template"].contents() == "{{ messages[0]['content'] }}"


def test_truncated_gguf_base_is_a_corrupt_file(f32_base, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(f32_base.read_bytes()[: f32_base.stat().st_size // 2])
    with pytest.raises(CorruptFile):
        convert(bad, tmp_path / "out", lora=FX / "adapter", options=ConvertOptions(gguf="f16"))
    assert not (tmp_path / "out").exists()


def test_adapter_of_another_shape_is_refused_before_writing(f32_base, tmp_path):
    with pytest.raises(AdapterMismatch):
        convert(f32_base, tmp_path / "out", lora=FIXTURES / "qwen3-bpe" / "adapter",
                options=ConvertOptions(gguf="f16"))
    assert not (tmp_path / "out").exists()


def test_onnx_from_a_gguf_with_a_vocabulary_it_cannot_rebuild_is_refused(tmp_path):
    """ONNX from a GGUF source rebuilds SentencePiece vocabularies only (tests/test_onnx_gemma.py
    covers the supported path); a byte-level BPE one is refused before anything is written."""
    pytest.importorskip("onnx", reason="onnx not installed (the onnx extra)")
    convert(FIXTURES / "qwen2-bpe" / "base", tmp_path / "gguf", options=ConvertOptions(gguf="f16", name="q"))
    with pytest.raises(ConversionError, match="SentencePiece"):
        convert(tmp_path / "gguf" / "q-f16.gguf", tmp_path / "out", options=ConvertOptions(gguf="", onnx="fp32"))
    assert not (tmp_path / "out").exists()
