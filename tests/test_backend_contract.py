"""One backend contract, run over every backend through the real engine.

llama.cpp serves the embedded gemma-3-270m (the session's engine); onnxruntime
serves the ONNX export of the converter's llama-spm fixture (exported once,
shared with test_onnx.py). Each case holds for any backend behind the
``Backend`` protocol: greedy is deterministic, the joined stream
is the non-streaming call, a stop string ends the text and is not emitted, a
shared prefix is reused from the KV cache, a cancel stops within a token, and a
prompt past the context is a typed error after which the engine still serves.
Backend-specific checks (parity, file damage, thread policy) stay in
test_engine.py and test_onnx.py.
"""

from __future__ import annotations

import pytest

from thinkling.runtime import ContextLengthExceeded, Engine, EngineConfig, GenerationRequest, SamplingParams
from thinkling.runtime.generate import join_stream

GREEDY = SamplingParams(temperature=0.0)
PROMPT = "The three primary colors are"


def req(prompt=PROMPT, **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("sampling", GREEDY)
    return GenerationRequest(prompt=prompt, **kw)


@pytest.fixture(scope="module", params=["llama_cpp", "onnx"])
def any_engine(request, tmp_path_factory):
    if request.param == "llama_cpp":
        yield request.getfixturevalue("engine")
        return
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed (the onnx extra)")
    pytest.importorskip("onnx", reason="onnx not installed (the onnx extra)")
    pytest.importorskip("tokenizers", reason="tokenizers not installed (the onnx extra)")
    from test_onnx import _export  # the export test_onnx.py checks for parity, made once

    path = _export(tmp_path_factory.mktemp("onnx-contract"), "llama-spm", ("fp32", "int4"))["fp32"]
    eng = Engine(str(path), EngineConfig(n_ctx=256, n_threads=2, queue_size=4))
    yield eng
    eng.close()


def test_greedy_is_deterministic(any_engine):
    # both cold: llama.cpp's logits for a position differ in the last bits with the batch
    # it was computed in, so a warm rerun may flip a near-tie (tests/test_onnx.py checks
    # ONNX's incremental decode equals its one-shot logits)
    any_engine.reset_cache()
    a = any_engine.generate(req())
    any_engine.reset_cache()
    b = any_engine.generate(req())
    assert a.tokens == b.tokens and a.text == b.text and len(a.tokens) > 0


def test_stream_join_equals_non_streaming(any_engine):
    chunks = list(any_engine.stream(req("Water boils at")))
    joined = join_stream(iter(chunks), any_engine.model_name)
    whole = any_engine.generate(req("Water boils at"))
    assert joined.tokens == whole.tokens and joined.text == whole.text
    assert chunks[-1].finish_reason is not None and chunks[-1].timings.decode_tok_s > 0
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stop_string_is_honoured_and_not_emitted(any_engine):
    full = any_engine.generate(req(max_tokens=16))
    assert len(full.text) >= 4, full.text
    stop = full.text[2:4]  # a string the model really produces
    r = any_engine.generate(req(max_tokens=16, stop=[stop]))
    assert r.finish_reason == "stop" and stop not in r.text and full.text.startswith(r.text)


def test_prefix_reuse_shows_in_cached_tokens(any_engine):
    base = "The quick brown fox jumps over the lazy dog, and then"
    first = any_engine.generate(req(base, max_tokens=2))
    r = any_engine.generate(req(base + " the", max_tokens=2))
    # the base prompt's tokens (all but a merge at the seam) come from the cache
    assert r.timings.cached_tokens >= first.timings.prompt_tokens - 2 and r.timings.cached_tokens > 5


def test_cancel_stops_within_one_token(any_engine):
    handle = any_engine.submit(req("Once upon a time", max_tokens=200))
    first = handle.get(timeout=60)
    assert first is not None
    handle.cancel()
    at_cancel = handle.tokens_emitted
    chunks = [first] + list(handle)
    assert chunks[-1].finish_reason == "cancelled"
    assert chunks[-1].timings.completion_tokens <= at_cancel + 1
    assert any_engine.generate(req(max_tokens=2)).timings.completion_tokens == 2


def test_context_overflow_raises_and_engine_keeps_serving(any_engine):
    n_ctx = any_engine.describe().n_ctx
    with pytest.raises(ContextLengthExceeded) as e:
        any_engine.generate(req("word " * (2 * n_ctx)))
    assert e.value.prompt_tokens > e.value.limit == n_ctx
    assert any_engine.generate(req(max_tokens=2)).timings.completion_tokens == 2
