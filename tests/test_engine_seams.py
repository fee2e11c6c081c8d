"""The engine's seams over the scripted backend (no model): built from an opened
backend, control calls that run on the worker, and the record the edges show."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from thinkling.runtime import Engine, EngineClosed, EngineConfig, GenerationRequest, Message, SamplingParams
from thinkling.runtime.models import ModelRef
from thinkling.runtime.thinking import ThinkingProfile
from scripted_backend import ScriptedBackend

REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "thinkling-arith"})


class WatchedBackend(ScriptedBackend):
    """Records which thread touches the KV cache."""

    def __init__(self):
        super().__init__()
        self.threads: set[str] = set()

    def truncate(self, n_keep):
        self.threads.add(threading.current_thread().name)
        super().truncate(n_keep)

    def eval(self, tokens):
        self.threads.add(threading.current_thread().name)
        return super().eval(tokens)


def ask(engine, think="off"):
    return engine.generate(GenerationRequest(messages=[Message("user", "12 + 30")], think=think,
                                             sampling=SamplingParams(temperature=0), max_tokens=8))


def test_control_calls_run_on_the_worker_and_the_backend_has_one_owner():
    backend = WatchedBackend()
    with Engine.from_backend(backend, REF, EngineConfig(queue_size=2), profile=None) as eng:
        r = ask(eng)
        assert r.text == "42" and r.decision.mode == "off"
        cached = eng.cache_tokens()
        assert cached[r.timings.prompt_tokens:][:len(r.tokens)] == r.tokens  # the prompt, then the answer
        eng.reset_cache()
        assert eng.cache_tokens() == [] and ask(eng).timings.cached_tokens == 0
    assert backend.threads == {"thinkling-engine"}


def test_profile_override_and_describe():
    with Engine.from_backend(ScriptedBackend(), REF, profile=None) as eng:
        d = eng.describe()
        assert (d.model, d.n_ctx, d.thinking_family, d.profile) == ("scripted", 512, "template-mode", None)
        assert ask(eng, "auto").decision.stage is None  # no profile: the family's default
        eng.set_profile(ThinkingProfile(weights={"bias": 5.0}, threshold=0.5))
        assert eng.describe().profile is not None
        assert ask(eng, "auto").decision.stage == "probe"
        eng.set_profile(None)
        assert eng.describe().profile is None
    with pytest.raises(EngineClosed):
        eng.reset_cache()
