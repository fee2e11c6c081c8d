"""The thread governor driving real llama.cpp on the embedded model.

The slow-down is injected through the governor's timing input (each step at 2
threads reads as half a second slower), so the switch does not depend on what
else this machine runs; the assertions are on the switch events and on the
counts llama.cpp itself reports, never on a duration.
"""

from __future__ import annotations

import pytest

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, SamplingParams

PROMPT = "The history of the printing press"


def generate(engine: Engine, max_tokens: int = 40):
    return engine.generate(GenerationRequest(prompt=PROMPT, max_tokens=max_tokens,
                                             sampling=SamplingParams(temperature=0.0)))


@pytest.fixture()
def adaptive():
    with Engine("gemma-3-270m", EngineConfig(n_ctx=512, n_threads=2, queue_size=1)) as e:
        yield e


def test_a_slow_second_thread_moves_decode_and_prefill_to_one(adaptive, monkeypatch):
    backend, gov = adaptive.backend, adaptive.backend.governor
    assert gov is not None and backend.native_threads() == (2, 2)
    real = gov.observe
    monkeypatch.setattr(gov, "observe", lambda s: real(s + (0.5 if gov.threads == 2 else 0.0)))
    first = generate(adaptive)
    events = [c.to_dict() for c in gov.history]
    assert events[:2] == [{"step": 8, "from": 2, "to": 1, "reason": "trial"},
                          {"step": 16, "from": 2, "to": 1, "reason": "kept"}], events
    assert backend.native_threads() == (1, 1)  # prefill (n_threads_batch) follows the kept count
    state = adaptive.threads()
    assert state["threads"] == state["batch_threads"] == 1 and state["recent_changes"][-1]["reason"] == "kept"
    adaptive.reset_cache()
    assert generate(adaptive).tokens == first.tokens  # the next request, prompt and all, on 1 thread


def test_while_probing_prefill_stays_on_the_settled_count(adaptive):
    gov = adaptive.backend.governor
    generate(adaptive, max_tokens=12)  # the first window ends at step 8: a trial at 1 thread begins
    if gov.history and gov.history[-1].reason == "trial":  # still inside the trial
        assert adaptive.backend.native_threads() == (1, 2)
    else:  # the trial was already cut short (1 thread used a whole window's time)
        assert [c.reason for c in gov.history] == ["trial", "back"]
        assert adaptive.backend.native_threads() == (2, 2)


def test_one_thread_runs_fixed_and_says_adaptive_was_asked():
    with Engine("gemma-3-270m", EngineConfig(n_ctx=512, n_threads=1, queue_size=1)) as e:
        assert e.backend.governor is None
        assert e.threads() == {"policy": "fixed", "threads": 1, "requested": "adaptive"}
