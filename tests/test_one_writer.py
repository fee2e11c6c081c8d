"""Records have one writer each: the engine copies the caller's request instead of
writing into it, and each layer adds its part of a chunk by ``dataclasses.replace``
(generate creates it, the controller adds the decision, the engine its timings)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
from thinkling.runtime.models import ModelRef
from scripted_backend import ScriptedBackend

REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "thinkling-arith"})


def test_submit_leaves_the_callers_request_as_it_was():
    req = GenerationRequest(messages=[Message("user", "12 + 30")], think="off",
                            sampling=SamplingParams(temperature=0), max_tokens=8)
    before = dataclasses.asdict(req)
    with Engine.from_backend(ScriptedBackend(), REF, EngineConfig(speculative="ngram"), profile=None) as eng:
        handle = eng.submit(req)
        chunks = list(handle)
        assert handle.request is not req and handle.request.speculative == "ngram"  # the engine's default, on its copy
        assert handle.request.submitted_at >= req.submitted_at
        again = eng.generate(req)  # the same request object serves twice
    assert dataclasses.asdict(req) == before
    assert "".join(c.text for c in chunks) == again.text == "42"


def test_the_last_chunk_carries_each_layers_part():
    with Engine.from_backend(ScriptedBackend(), REF, profile=None) as eng:
        last = list(eng.stream(GenerationRequest(messages=[Message("user", "12 + 30")], think="off",
                                                 sampling=SamplingParams(temperature=0))))[-1]
    assert last.finish_reason == "stop" and last.decision.mode == "off"  # the controller's part
    assert last.timings.queue_ms >= 0 and last.timings.completion_tokens == 2  # the loop's and the engine's
