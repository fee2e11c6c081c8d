"""The ONNX path: export the converter fixtures, check parity with the golden
logits, and run the onnx backend through the same engine contract as llama.cpp."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (the onnx extra)")
pytest.importorskip("onnx", reason="onnx not installed (the onnx extra)")
pytest.importorskip("tokenizers", reason="tokenizers not installed (the onnx extra)")

from thinkling.convert.errors import UnsupportedArchitecture  # noqa: E402
from thinkling.convert.onnx.export import OnnxOptions, export_onnx  # noqa: E402
from thinkling.convert.onnx.parity import compare_logits, load_merged, onnx_logits  # noqa: E402
from thinkling.runtime import (Engine, EngineConfig, GenerationRequest,  # noqa: E402
                     InvalidModelFile, SamplingParams)
from thinkling.runtime.backends import BackendOptions, open_backend  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "convert"
GREEDY = SamplingParams(temperature=0.0)
# int4 on the golden fixtures: their deliberately wide weights (hidden 64) turn 4-bit
# rounding into large logit noise (measured KL 0.31-1.05), so that bound only catches a
# broken graph (interleaved instead of half-split rotary measured KL 7.6). The real bound is on a
# well-conditioned random qwen2 (N(0, 1/fan_in) weights), in the same --check table as
# GGUF: measured ONNX int4 KL 0.051 vs Q4_K_M 0.030 there; the bound is Q4_K_M's own.
INT4_FIXTURE_MAX_KL = 1.5
INT4_WIDE_MAX_KL = 0.12
INT4_WIDE_MIN_HIDDEN_COS = 0.9  # measured 0.926 there; fp32 is 1.0 to 6 digits

_exports: dict[str, dict[str, Path]] = {}


def _export(tmp_root: Path, fx: str, quants=("fp32",)) -> dict[str, Path]:
    key = f"{fx}:{','.join(quants)}"
    if key not in _exports:
        w, cfg = load_merged(FIXTURES / fx / "base", FIXTURES / fx / "adapter")
        out = tmp_root / fx
        entries = export_onnx(w, cfg, out, OnnxOptions(name=fx, quants=quants, src=FIXTURES / fx / "base"))
        _exports[key] = {e["quant"]: out / e["path"] for e in entries}
    return _exports[key]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def llama(tmp_root):
    return _export(tmp_root, "llama-spm", ("fp32", "int4"))


@pytest.fixture(scope="module")
def onnx_engine(llama):
    eng = Engine(str(llama["fp32"]), EngineConfig(n_ctx=256, n_threads=2, queue_size=4))
    yield eng
    eng.close()


def _golden(fx):
    return json.loads((FIXTURES / fx / "golden.json").read_text()), np.load(FIXTURES / fx / "golden_logits.npy")


PARITY_FIXTURES = [
    "llama-spm",
    "qwen2-bpe",  # tied embeddings with a LoRA on lm_head, qkv bias, padded vocab
    "qwen3-bpe",
    "gemma3-spm",  # 5 sliding-window layers (window 8) + 1 global, q/k norm, 1 + w norms, GeGLU
]


# --- export + parity ---------------------------------------------------------------
@pytest.mark.parametrize("fx", PARITY_FIXTURES)
def test_fp32_matches_golden_logits_and_hf_tokenization(tmp_root, fx):
    path = _export(tmp_root, fx)["fp32"]
    golden, ref = _golden(fx)
    b = open_backend("onnx", str(path), BackendOptions(n_ctx=512, n_threads=2))
    try:
        assert [b.tokenize(p, add_special=True) for p in golden["prompts"]] == golden["token_ids"]
    finally:
        b.close()
    r = compare_logits(onnx_logits(path, golden["token_ids"]), ref)
    assert r["top1_agreement"] == 1.0, r
    assert r["max_abs_diff"] < 1e-3, r


def test_int4_is_matmulnbits_and_within_kl(llama):
    import onnx

    model = onnx.load(str(llama["int4"]))
    ops = {n.op_type for n in model.graph.node}
    assert {"MatMulNBits", "GatherBlockQuantized"} <= ops
    # every projection and the head are 4-bit; only activation x activation MatMuls (attention) stay
    assert not any(n.op_type == "MatMul" and (n.name.endswith("_proj/MatMul") or n.name == "lm_head/MatMul")
                   for n in model.graph.node)
    assert llama["int4"].stat().st_size < llama["fp32"].stat().st_size / 2.5
    golden, ref = _golden("llama-spm")
    r = compare_logits(onnx_logits(llama["int4"], golden["token_ids"]), ref)
    assert r["kl_mean"] < INT4_FIXTURE_MAX_KL, r


def test_folder_is_genai_shaped_with_manifest(llama, tmp_root):
    folder = llama["fp32"].parent
    for name in ("genai_config.json", "tokenizer.json", "tokenizer_config.json", "manifest.json"):
        assert (folder / name).is_file(), name
    g = json.loads((folder / "genai_config.json").read_text())["model"]
    assert g["decoder"]["filename"] == llama["fp32"].name and g["type"] == "llama"
    assert g["decoder"]["inputs"]["past_key_names"] == "past_key_values.%d.key"
    def no_nulls(x):  # ORT GenAI's parser rejects null where it expects a number
        return x is not None and all(map(no_nulls, x.values() if isinstance(x, dict) else
                                         x if isinstance(x, list) else []))
    qwen2 = _export(tmp_root, "qwen2-bpe")["fp32"].parent  # no BOS token
    assert no_nulls(g) and no_nulls(json.loads((qwen2 / "genai_config.json").read_text()))
    entry = json.loads((folder / "manifest.json").read_text())["files"][0]
    assert entry["format"] == "onnx" and entry["quant"] == "fp32" and len(entry["sha256"]) == 64
    assert entry["size_bytes"] == llama["fp32"].stat().st_size


def test_plain_and_gqa_lowerings_agree(tmp_root):
    w, cfg = load_merged(FIXTURES / "llama-spm" / "base", FIXTURES / "llama-spm" / "adapter")
    out = tmp_root / "plain"
    opts = OnnxOptions(name="p", quants=["fp32"], src=FIXTURES / "llama-spm" / "base", attention="plain")
    entry = export_onnx(w, cfg, out, opts)[0]
    golden, ref = _golden("llama-spm")
    r = compare_logits(onnx_logits(out / entry["path"], golden["token_ids"]), ref)
    assert entry["attention"] == "plain" and r["top1_agreement"] == 1.0 and r["max_abs_diff"] < 1e-3


def _refused_config(tmp_path: Path) -> Path:
    """The gemma3 fixture with attention-logit soft-capping (Gemma 2's), which nothing here exports."""
    src = tmp_path / "softcap"
    src.mkdir()
    for f in (FIXTURES / "gemma3-spm" / "base").iterdir():
        (src / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps(dict(cfg, attn_logit_softcapping=50.0)))
    return src


def test_unsupported_config_refused_before_writing(tmp_path):
    src = _refused_config(tmp_path)
    w, cfg = load_merged(src)
    with pytest.raises(UnsupportedArchitecture, match="soft-capping"):
        export_onnx(w, cfg, tmp_path / "out", OnnxOptions(name="g", quants=["fp32"], src=src))
    assert not (tmp_path / "out").exists()


# --- bad files --------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_onnx_is_invalid_model_file(llama, tmp_path, damage):
    folder = tmp_path / "m"
    folder.mkdir()
    src = llama["fp32"].parent
    for f in src.iterdir():
        if f.suffix != ".onnx" and f.name != "manifest.json":
            (folder / f.name).write_bytes(f.read_bytes())
    data = llama["fp32"].read_bytes()
    bad = folder / "model.onnx"
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x08\x07" + bytes(range(256)) * 40,
                     "empty": b""}[damage])
    with pytest.raises(InvalidModelFile):
        open_backend("onnx", str(bad), BackendOptions(n_ctx=128, n_threads=1))
    with pytest.raises(InvalidModelFile):
        Engine(str(bad), EngineConfig(n_ctx=128, n_threads=1))


def test_onnx_without_tokenizer_is_invalid_model_file(llama, tmp_path):
    bad = tmp_path / "lonely.onnx"
    bad.write_bytes(llama["fp32"].read_bytes())
    with pytest.raises(InvalidModelFile, match="tokenizer"):
        open_backend("onnx", str(bad), BackendOptions(n_ctx=128, n_threads=1))


# --- the backend contract, through the engine ------------------------------------------------
def req(prompt="The quick brown fox", **kw):
    kw.setdefault("max_tokens", 10)
    kw.setdefault("sampling", GREEDY)
    return GenerationRequest(prompt=prompt, **kw)


def test_engine_resolves_onnx_from_manifest(onnx_engine):
    assert onnx_engine.ref.backend == "onnx" and onnx_engine.ref.file_entry["format"] == "onnx"
    meta = onnx_engine.backend.metadata()
    assert onnx_engine.backend.bos_text == "<s>" and onnx_engine.backend.eos_text == "</s>"
    assert "tokenizer.chat_template" in meta



def test_incremental_decode_equals_one_shot_logits(llama):
    """KV cache correctness: prompt in pieces == prompt at once."""
    golden, _ = _golden("llama-spm")
    ids = golden["token_ids"][1]
    b = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=256, n_threads=2, n_batch=3))
    try:
        one = np.array(b.eval(ids))
        b.truncate(4)
        again = np.array(b.eval(ids[4:]))
        b.truncate(0)
        step = None
        for t in ids:
            step = np.array(b.eval([t]))
    finally:
        b.close()
    assert np.abs(one - again).max() < 1e-4 and np.abs(one - step).max() < 1e-4



def test_sampling_seeded_is_reproducible(onnx_engine):
    s = SamplingParams(temperature=0.9, top_p=0.95, seed=7)
    a = onnx_engine.generate(req(sampling=s, max_tokens=8))
    b = onnx_engine.generate(req(sampling=s, max_tokens=8))
    assert a.tokens == b.tokens






def test_utf8_pieces_round_trip(llama):
    """Byte-fallback pieces map back to raw bytes: joining them gives the text."""
    b = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=128, n_threads=1))
    try:
        text = "café naïve — 你好 🙂"
        ids = b.tokenize(text, add_special=False)
        assert b"".join(b.token_bytes(t) for t in ids).decode("utf-8").strip() == text
        assert b.is_eog(b.tokenize("</s>", add_special=False)[0])
        assert b.tokenize("</s>", add_special=False, parse_special=False) != b.tokenize("</s>", add_special=False)
    finally:
        b.close()


def test_byte_level_pieces_round_trip(tmp_root):
    path = _export(tmp_root, "qwen3-bpe")["fp32"]
    b = open_backend("onnx", str(path), BackendOptions(n_ctx=128, n_threads=1))
    try:
        text = "café naïve — 你好 🙂 12+7"
        ids = b.tokenize(text, add_special=False)
        assert b"".join(b.token_bytes(t) for t in ids).decode("utf-8") == text
    finally:
        b.close()


def test_concurrent_submissions_are_serialised(onnx_engine):
    results = []
    threads = [threading.Thread(target=lambda: results.append(onnx_engine.generate(req(max_tokens=4))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len({tuple(r.tokens) for r in results}) == 1


def test_external_data_past_the_threshold(tmp_path, monkeypatch):
    """Weights past the protobuf limit go to <file>.data; the folder still loads and matches."""
    import thinkling.convert.onnx.export as ox

    monkeypatch.setattr(ox, "EXTERNAL_DATA_BYTES", 0)  # the fixture is tiny: force the big-model path
    w, cfg = load_merged(FIXTURES / "llama-spm" / "base", FIXTURES / "llama-spm" / "adapter")
    entry, int4 = export_onnx(w, cfg, tmp_path, OnnxOptions(name="x", quants=["fp32", "int4"],
                                                            src=FIXTURES / "llama-spm" / "base"))
    assert int4["quant"] == "int4" and (tmp_path / int4["external_data"]["path"]).is_file()
    data = tmp_path / entry["external_data"]["path"]
    assert data.is_file() and (tmp_path / entry["path"]).stat().st_size < 100_000
    assert entry["size_bytes"] == (tmp_path / entry["path"]).stat().st_size + data.stat().st_size
    golden, ref = _golden("llama-spm")
    r = compare_logits(onnx_logits(tmp_path / entry["path"], golden["token_ids"]), ref)
    assert r["top1_agreement"] == 1.0 and r["max_abs_diff"] < 1e-3


def test_truncated_external_data_is_invalid_model_file(tmp_path, monkeypatch):
    import thinkling.convert.onnx.export as ox

    monkeypatch.setattr(ox, "EXTERNAL_DATA_BYTES", 0)
    w, cfg = load_merged(FIXTURES / "llama-spm" / "base")
    entry = export_onnx(w, cfg, tmp_path, OnnxOptions(name="x", quants=["fp32"],
                                                       src=FIXTURES / "llama-spm" / "base"))[0]
    data = tmp_path / entry["external_data"]["path"]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 3])
    with pytest.raises(InvalidModelFile):
        open_backend("onnx", str(tmp_path / entry["path"]), BackendOptions(n_ctx=128, n_threads=1))


# --- the CLI, as a user runs it -----------------------------------------------------------------
def _cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "thinkling.runtime.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_convert_onnx_only_with_check(tmp_path):
    fx = FIXTURES / "llama-spm"
    p = _cli("convert", str(fx / "base"), "--lora", str(fx / "adapter"), "--out", str(tmp_path),
             "--gguf", "", "--onnx", "fp32", "--check")
    assert p.returncode == 0, p.stderr
    assert "llama-spm-onnx-fp32/llama-spm-fp32.onnx" in p.stdout and "100.0%" in p.stdout
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (entry,) = manifest["files"]
    assert entry["format"] == "onnx" and entry["parity"]["top1_agreement"] == 1.0
    assert entry["parity"]["tokenization_matches_hf"] is True
    assert entry["parity"]["hidden_cosine_min"] > 0.99999 and entry["parity"]["hidden_max_abs_diff"] < 1e-3
    local = json.loads((tmp_path / "llama-spm-onnx-fp32" / "manifest.json").read_text())
    assert local["files"][0]["parity"] == entry["parity"]  # the runtime reads the folder's copy
    ask = _cli("ask", "Hello", "--raw", "--json", "--model", str(tmp_path / entry["path"]),
               "--temperature", "0", "--max-tokens", "4", "--threads", "1", "--ctx", "128")
    assert ask.returncode == 0, ask.stderr
    assert len(json.loads(ask.stdout)["tokens"]) >= 1


def test_cli_convert_unsupported_architecture_is_one_line(tmp_path):
    src = _refused_config(tmp_path)
    p = _cli("convert", str(src), "--out", str(tmp_path / "out"), "--onnx", "fp32")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "soft-capping" in p.stderr
    assert not (tmp_path / "out").exists()


def test_int4_on_a_well_conditioned_model_in_the_same_table_as_gguf(tmp_path, monkeypatch):
    import thinkling.convert.pipeline as pipeline
    from thinkling.convert.pipeline import ConvertOptions, convert
    from thinkling.convert.testing import SMALL_QWEN2, make_random_qwen2

    calls = []
    reference = pipeline.reference_forward
    monkeypatch.setattr(pipeline, "reference_forward", lambda *a: calls.append(1) or reference(*a))
    src = make_random_qwen2(tmp_path / "src", SMALL_QWEN2, FIXTURES / "qwen2-bpe" / "base")
    m = convert(src, tmp_path / "out",
                options=ConvertOptions(gguf="q4_k_m", onnx="fp32,int4", check=True, name="wide", threads=2))
    assert len(calls) == 1  # one reference forward for the GGUF and the ONNX rows
    rows = {(f.format, f.quant): f.parity for f in m.files}
    assert set(rows) == {("gguf", "q4_k_m"), ("onnx", "fp32"), ("onnx", "int4")}
    assert rows["onnx", "fp32"]["top1_agreement"] == 1.0 and rows["onnx", "fp32"]["max_abs_diff"] < 1e-3
    assert rows["onnx", "int4"]["kl_mean"] < INT4_WIDE_MAX_KL, rows["onnx", "int4"]
    assert rows["onnx", "int4"]["tokenization_matches_hf"] is True
    # hidden_last against the reference's final-norm state, in the same table
    assert rows["onnx", "fp32"]["hidden_cosine_min"] > 0.99999, rows["onnx", "fp32"]
    assert rows["onnx", "fp32"]["hidden_max_abs_diff"] < 1e-3, rows["onnx", "fp32"]
    assert rows["onnx", "int4"]["hidden_cosine_min"] > INT4_WIDE_MIN_HIDDEN_COS, rows["onnx", "int4"]
    assert "hidden_cosine_min" not in rows["gguf", "q4_k_m"]  # only files that export it


@pytest.mark.parametrize("existing", [False, True])
def test_failure_after_the_onnx_export_leaves_out_untouched(tmp_path, monkeypatch, existing):
    """ONNX folders are staged with the GGUF files and renamed only after every check:
    a failure in the last check leaves --out as it was (absent, or with its old files)."""
    import thinkling.convert.onnx.parity as onnx_parity
    from thinkling.convert.pipeline import ConvertOptions, convert

    fx = FIXTURES / "llama-spm"
    out = tmp_path / "out"
    if existing:  # a previous conversion's files must survive a failed one, byte for byte
        (out / "llama-spm-onnx-fp32").mkdir(parents=True)
        (out / "llama-spm-onnx-fp32" / "llama-spm-fp32.onnx").write_bytes(b"old model")
        (out / "manifest.json").write_text("{}")

    def snapshot():
        return {str(p.relative_to(out)): p.read_bytes() if p.is_file() else None
                for p in sorted(out.rglob("*"))} if out.exists() else None

    before = snapshot()
    written = []

    def fail(files, entries, *a):
        written.extend(Path(files[str(Path(e["path"]).parent)]) for e in entries)
        assert all(p.is_dir() for p in written)  # the ONNX export did run
        raise RuntimeError("injected after the ONNX export")

    monkeypatch.setattr(onnx_parity, "check_staged", fail)
    with pytest.raises(RuntimeError, match="injected"):
        convert(fx / "base", out, lora=fx / "adapter",
                options=ConvertOptions(gguf="f16", onnx="fp32,int4", check=True, threads=2))
    assert written and snapshot() == before


def test_logits_to_keep_gives_the_last_rows_and_the_backend_uses_it(llama):
    """The optional input (an overridable initializer, default 0 = every row) slices before the
    head; the backend must find it, or every prefill computes and returns [S, vocab] logits."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(llama["fp32"]), providers=["CPUExecutionProvider"])
    assert "logits_to_keep" in {i.name for i in s.get_overridable_initializers()}
    ids = _golden("llama-spm")[0]["token_ids"][1]
    feed = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), np.int64),
            "position_ids": np.arange(len(ids))[None]}
    kv = s.get_inputs()[3].shape  # [batch, kv_heads, past, head_dim]
    feed.update({i.name: np.zeros((1, kv[1], 0, kv[3]), np.float32) for i in s.get_inputs()
                 if i.name.startswith("past_key_values.")})
    full = s.run(["logits"], feed)[0]
    last2 = s.run(["logits"], {**feed, "logits_to_keep": np.array([2])})[0]
    assert full.shape[1] == len(ids) and last2.shape[1] == 2 and np.abs(full[:, -2:] - last2).max() < 1e-5
    # hidden_last is the last position's state whatever logits_to_keep asks of the head
    h_full = s.run(["hidden_last"], feed)[0]
    h_last2 = s.run(["hidden_last"], {**feed, "logits_to_keep": np.array([2])})[0]
    assert h_full.ndim == 2 and h_full.shape[0] == 1 and np.abs(h_full - h_last2).max() < 1e-5
    b = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=128, n_threads=1))
    try:
        assert b._has_keep  # white-box: the flag that makes eval() ask for one row
    finally:
        b.close()


# --- hidden_last: the final-norm state of the last position (the thinking gate's signal) ---------
def _reference_states(fx: str, token_ids) -> np.ndarray:
    from thinkling.convert.archs import EMBED, dims_from_config, spec_for
    from thinkling.convert.reference import reference_forward

    w, cfg = load_merged(FIXTURES / fx / "base", FIXTURES / fx / "adapter")
    return reference_forward(w, dims_from_config(cfg, spec_for(cfg), w.shape(EMBED)[0]), token_ids)[1]


@pytest.mark.parametrize("fx", PARITY_FIXTURES)
def test_hidden_last_matches_the_numpy_reference(tmp_root, fx):
    from thinkling.convert.onnx.parity import compare_hidden, onnx_outputs

    path = _export(tmp_root, fx)["fp32"]
    golden, _ = _golden(fx)
    logits, hidden = onnx_outputs(path, golden["token_ids"])
    ref = _reference_states(fx, golden["token_ids"])
    assert hidden is not None and hidden.shape == ref.shape
    h = compare_hidden(hidden, ref)
    assert h["hidden_cosine_min"] > 0.99999 and h["hidden_max_abs_diff"] < 1e-3, h


def test_int4_exports_hidden_last_and_the_backend_says_so(llama):
    import onnx

    model = onnx.load(str(llama["int4"]))
    assert "hidden_last" in [o.name for o in model.graph.output]
    b = open_backend("onnx", str(llama["int4"]), BackendOptions(n_ctx=128, n_threads=1))
    try:
        assert b.capabilities.hidden_state
        _, hidden = b.eval_hidden(b.tokenize("The quick brown fox", add_special=True))
        assert hidden is not None and hidden.shape == (64,) and np.isfinite(hidden).all()
    finally:
        b.close()


def test_hidden_last_is_the_last_prompt_token_with_chunks_and_prefix_reuse(llama):
    """Prefill in chunks of n_batch, and a re-fed suffix after truncate(), give the one-pass state."""
    ids = _golden("llama-spm")[0]["token_ids"][-1]
    assert len(ids) > 6
    one = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=128, n_threads=1))
    chunked = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=128, n_threads=1, n_batch=3))
    try:
        want = one.eval_hidden(ids)[1]
        assert np.abs(chunked.eval_hidden(ids)[1] - want).max() < 1e-5
        chunked.truncate(len(ids) - 2)
        assert np.abs(chunked.eval_hidden(ids[-2:])[1] - want).max() < 1e-5
        # the state of the last token, not of an earlier one
        one.truncate(0)
        assert np.abs(one.eval_hidden(ids[:-1])[1] - want).max() > 1e-3
    finally:
        one.close()
        chunked.close()


def test_a_folder_converted_before_hidden_last_loads_without_the_signal(llama, tmp_path):
    """Folders written before the converter added the output: same logits, hidden_state false."""
    import onnx

    src = llama["fp32"].parent
    old = tmp_path / src.name
    old.mkdir()
    for f in src.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    model = onnx.load(str(old / llama["fp32"].name))
    outs = [o for o in model.graph.output if o.name != "hidden_last"]
    del model.graph.output[:]
    model.graph.output.extend(outs)
    keep = [n for n in model.graph.node if "hidden_last" not in n.output]
    del model.graph.node[:]
    model.graph.node.extend(keep)  # the dangling Slice before it is pruned by onnxruntime
    onnx.save(model, str(old / llama["fp32"].name))
    ids = _golden("llama-spm")[0]["token_ids"][1]
    b = open_backend("onnx", str(old / llama["fp32"].name), BackendOptions(n_ctx=128, n_threads=1))
    new = open_backend("onnx", str(llama["fp32"]), BackendOptions(n_ctx=128, n_threads=1))
    try:
        assert not b.capabilities.hidden_state and new.capabilities.hidden_state
        logits, hidden = b.eval_hidden(ids)
        assert hidden is None
        assert np.abs(logits - new.eval_hidden(ids)[0]).max() < 1e-5
    finally:
        b.close()
        new.close()


def test_hidden_last_equals_llama_cpp_eval_hidden_on_the_same_model(tmp_path):
    """The same merged weights as an F32 GGUF: llama.cpp's embeddings of the last token and the
    ONNX output agree (llama.cpp's own rounding: measured max |diff| 5e-4..4e-3 on the fixtures)."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed")
    from thinkling.convert.pipeline import ConvertOptions, convert

    fx = FIXTURES / "gemma3-spm"
    m = convert(fx / "base", tmp_path / "out", lora=fx / "adapter",
                options=ConvertOptions(gguf="f32", onnx="fp32", check=False, threads=2))
    paths = {f.format: tmp_path / "out" / f.path for f in m.files}
    g = open_backend("llama_cpp", str(paths["gguf"]), BackendOptions(n_ctx=256, n_threads=1))
    o = open_backend("onnx", str(paths["onnx"]), BackendOptions(n_ctx=256, n_threads=1))
    try:
        for prompt in _golden("gemma3-spm")[0]["prompts"][:3]:
            ids = g.tokenize(prompt, add_special=True)
            g.truncate(0)
            o.truncate(0)
            hg, ho = g.eval_hidden(ids)[1], o.eval_hidden(ids)[1]
            cos = float(hg @ ho / np.linalg.norm(hg) / np.linalg.norm(ho))
            assert cos > 0.9999 and np.abs(hg - ho).max() < 2e-2, (prompt, cos)
    finally:
        g.close()
        o.close()
