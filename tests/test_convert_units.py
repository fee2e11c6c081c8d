"""Converter pieces in isolation: the LoRA merge math, scales and patterns, tied-embedding
semantics, the RoPE permutation, tables against gguf-py, readers, and the numpy
reference against transformers' golden logits."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from thinkling.convert.archs import ARCHS, EMBED, GLOBAL_TENSORS, HEAD, dims_from_config, spec_for
from thinkling.convert.errors import UnsupportedTokenizer
from thinkling.convert.lora import merge_lora
from thinkling.convert.plan import permute_rope
from thinkling.convert.weights import open_weights

FIXTURES = Path(__file__).parent / "fixtures" / "convert"
NAMES = ["llama-spm", "qwen2-bpe", "qwen3-bpe", "gemma3-spm"]


# --- merge math -------------------------------------------------------------------
def test_merge_lora_is_w_plus_scaled_b_a():
    rng = np.random.default_rng(0)
    W, A, B = rng.standard_normal((6, 5)), rng.standard_normal((3, 5)), rng.standard_normal((6, 3))
    W32 = W.astype(np.float32)
    out = merge_lora(W32, A, B, 0.75)
    assert out.dtype == np.float32 and out is not W32
    np.testing.assert_allclose(out, W + 0.75 * B @ A, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(W32, W.astype(np.float32))  # input untouched
    # fan_in_fan_out: W stored [in, out] (Conv1D); the same delta, transposed
    np.testing.assert_allclose(merge_lora(W32.T, A, B, 0.75, fan_in_fan_out=True), (W + 0.75 * B @ A).T,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        merge_lora(W32, A, B[:5], 1.0)


def test_embedding_lora_merges_transposed():
    rng = np.random.default_rng(1)
    E = rng.standard_normal((10, 4)).astype(np.float32)  # [n_vocab, dim]
    A, B = rng.standard_normal((2, 10)), rng.standard_normal((4, 2))  # lora_embedding_A/B
    np.testing.assert_allclose(merge_lora(E, A, B, 2.0, fan_in_fan_out=True), E + 2.0 * (B @ A).T, rtol=1e-5,
                               atol=1e-5)


def test_scales_follow_rslora_rank_and_alpha_patterns():
    w = open_weights(FIXTURES / "llama-spm/base", FIXTURES / "llama-spm/adapter")
    pairs = w.adapter.pairs
    # r=4, alpha=8, rsLoRA: alpha / sqrt(r); o_proj r=2; layer 1 q_proj r=6; down_proj alpha 32
    assert pairs["model.layers.0.self_attn.q_proj.weight"].scale == pytest.approx(8 / math.sqrt(4))
    assert pairs["model.layers.1.self_attn.q_proj.weight"].r == 6
    assert pairs["model.layers.1.self_attn.q_proj.weight"].scale == pytest.approx(8 / math.sqrt(6))
    assert pairs["model.layers.0.self_attn.o_proj.weight"].scale == pytest.approx(8 / math.sqrt(2))
    assert pairs["model.layers.1.mlp.down_proj.weight"].scale == pytest.approx(32 / math.sqrt(4))
    assert pairs[EMBED].embedding and not pairs[HEAD].embedding


def test_tied_embeddings_follow_peft_merge_semantics():
    from thinkling.convert.lora import merge_lora
    from thinkling.convert.source import load_tensor

    # qwen2: tied, LoRA on lm_head -> the shared matrix moves, the model stays tied
    w = open_weights(FIXTURES / "qwen2-bpe/base", FIXTURES / "qwen2-bpe/adapter")
    assert w.tied and HEAD not in w
    pair = w.adapter.pairs[HEAD]
    expect = merge_lora(w.model.load(EMBED), load_tensor(pair.a), load_tensor(pair.b), pair.scale)
    np.testing.assert_array_equal(w[EMBED], expect)
    # gemma3: tied, modules_to_save embed_tokens -> untied; the head keeps the base embedding
    w = open_weights(FIXTURES / "gemma3-spm/base", FIXTURES / "gemma3-spm/adapter")
    assert not w.tied and HEAD in w
    np.testing.assert_array_equal(w[HEAD], w.model.load(EMBED))
    np.testing.assert_array_equal(w[EMBED], load_tensor(w.adapter.replacements[EMBED]))
    assert not np.array_equal(w[EMBED], w[HEAD])


# --- layout -----------------------------------------------------------------------
def _rope_half(q, pos, theta):  # HF: rotate (i, i + d/2)
    d = q.shape[-1]
    f = pos * theta ** (-np.arange(0, d, 2) / d)
    x1, x2 = q[..., : d // 2], q[..., d // 2:]
    return np.concatenate([x1 * np.cos(f) - x2 * np.sin(f), x2 * np.cos(f) + x1 * np.sin(f)], -1)


def _rope_interleaved(q, pos, theta):  # llama.cpp's llama: rotate (2i, 2i + 1)
    d = q.shape[-1]
    f = pos * theta ** (-np.arange(0, d, 2) / d)
    x1, x2 = q[..., 0::2], q[..., 1::2]
    out = np.empty_like(q)
    out[..., 0::2], out[..., 1::2] = x1 * np.cos(f) - x2 * np.sin(f), x2 * np.cos(f) + x1 * np.sin(f)
    return out


def test_permuted_q_with_interleaved_rope_equals_hf_rope():
    rng = np.random.default_rng(2)
    heads, d, n_in = 3, 8, 5
    W, x = rng.standard_normal((heads * d, n_in)), rng.standard_normal(n_in)
    hf = _rope_half((W @ x).reshape(heads, d), 7, 10000.0)
    cpp = _rope_interleaved((permute_rope(W, heads) @ x).reshape(heads, d), 7, 10000.0)
    # same attention scores: the permuted rows rotate the same pairs, stored interleaved
    np.testing.assert_allclose(cpp.reshape(-1), permute_rope(hf.reshape(-1), heads), atol=1e-12)
    np.testing.assert_allclose(hf @ hf.T, cpp @ cpp.T, atol=1e-10)


def test_tables_use_llama_cpp_tensor_names():
    from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES

    by_name = {v: k for k, v in MODEL_ARCH_NAMES.items()}
    for spec in ARCHS.values():
        known = {TENSOR_NAMES[t] for t in MODEL_TENSORS[by_name[spec.gguf_arch]]}
        for gguf_name in list(spec.layer_tensors.values()) + list(GLOBAL_TENSORS.values()):
            stem = gguf_name.rsplit(".", 1)[0]
            stem = "blk.{bid}." + stem if not stem.startswith(("token_embd", "output")) else stem
            assert stem in known, (spec.gguf_arch, gguf_name)


# --- readers ----------------------------------------------------------------------
def test_safetensors_reader_widens_bf16_and_f16(tmp_path):
    from thinkling.convert.source import load_tensor, read_header

    values = np.array([1.0, -2.5, 0.15625, 384.0], dtype=np.float32)  # exact in bf16 and f16
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    f16 = values.astype("<f2").tobytes()
    header = {"a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
              "b": {"dtype": "F16", "shape": [4], "data_offsets": [8, 16]}}
    blob = json.dumps(header).encode()
    path = tmp_path / "t.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + bf16 + f16)
    refs = read_header(path)
    np.testing.assert_array_equal(load_tensor(refs["a"]), values.reshape(2, 2))
    np.testing.assert_array_equal(load_tensor(refs["b"]), values)


def test_sentencepiece_reader():
    from thinkling.convert.spm import MODEL_BPE, read_model

    llama = read_model(FIXTURES / "llama-spm/base/tokenizer.model")
    assert len(llama.pieces) == 400 and llama.model_type == MODEL_BPE and llama.byte_fallback
    assert (llama.unk_id, llama.bos_id, llama.eos_id, llama.pad_id) == (0, 1, 2, -1)
    assert llama.add_dummy_prefix and llama.pieces[1] == "<s>" and llama.types[1] == 3
    assert llama.types.count(6) == 256  # byte-fallback pieces
    gemma = read_model(FIXTURES / "gemma3-spm/base/tokenizer.model")
    assert not gemma.add_dummy_prefix and gemma.bos_id == 2
    assert gemma.pieces[5] == "<start_of_turn>" and gemma.types[5] == 4  # user-defined


def test_pre_tokenizer_is_identified_by_regex():
    from thinkling.convert.vocab import _bpe_vocab, _pre_regex, PRE_TOKENIZERS

    for fx, pre in (("qwen2-bpe", "qwen2"), ("qwen3-bpe", "gpt-2")):
        tj = json.loads((FIXTURES / fx / "base/tokenizer.json").read_text())
        assert PRE_TOKENIZERS[_pre_regex(tj["pre_tokenizer"])] == pre
    tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{N}{1,5}"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    with pytest.raises(UnsupportedTokenizer, match="pre-tokenizer"):
        _bpe_vocab(tj, 512)


# --- the reference itself ----------------------------------------------------------
@pytest.mark.parametrize("fx", NAMES)
def test_numpy_reference_matches_transformers(fx):
    from thinkling.convert.reference import reference_logits

    w = open_weights(FIXTURES / fx / "base", FIXTURES / fx / "adapter")
    dims = dims_from_config(w.model.config, spec_for(w.model.config), w.shape(EMBED)[0])
    golden = json.loads((FIXTURES / fx / "golden.json").read_text())
    ref = np.load(FIXTURES / fx / "golden_logits.npy")
    out = reference_logits(w, dims, golden["token_ids"])
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=2e-4)
