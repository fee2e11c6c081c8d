"""The runtime core on the real embedded model through real llama.cpp (the contract every
backend meets, greedy, streaming, stops, prefix reuse, cancel, overflow, is test_backend_contract.py)."""

import threading
from collections import Counter

import pytest

from thinkling.runtime import (ContextLengthExceeded, Engine, EngineBusy, EngineConfig, GenerationRequest,
                     InvalidModelFile, InvalidRequest, Message, ModelNotFound, SamplingParams)

GREEDY = SamplingParams(temperature=0.0)


def req(prompt="The three primary colors are", **kw):
    kw.setdefault("max_tokens", 12)
    kw.setdefault("sampling", GREEDY)
    return GenerationRequest(prompt=prompt, **kw)




def test_max_tokens_is_honoured(engine):
    r = engine.generate(req(max_tokens=3))
    assert r.finish_reason == "length" and len(r.tokens) == 3 and r.timings.completion_tokens == 3




def test_frequency_penalty_breaks_a_greedy_repeat(engine):
    prompt = "ha ha ha ha ha"
    plain = engine.generate(req(prompt, max_tokens=8))
    top, n = Counter(plain.tokens).most_common(1)[0]
    assert n >= 6, plain.text  # greedy alone repeats " ha"
    strong = SamplingParams(temperature=0.0, frequency_penalty=2.0)
    a = engine.generate(req(prompt, max_tokens=8, sampling=strong))
    engine.reset_cache()  # cold cache: the same tokens regardless
    b = engine.generate(req(prompt, max_tokens=8, sampling=strong))
    assert a.tokens == b.tokens  # greedy with penalties stays deterministic
    assert a.tokens.count(top) < n and a.text != plain.text, a.text
    # the prompt's own " ha"s do not count (OpenAI's rule): the first token is unchanged
    assert a.tokens[0] == plain.tokens[0]


class _WatchedStats(dict):
    """Counts writes to the engine's counters and records any made without its lock."""

    def __init__(self, data, lock):
        super().__init__(data)
        self.lock, self.writes, self.unlocked = lock, 0, []

    def __setitem__(self, key, value):
        self.writes += 1
        if not self.lock.locked():
            self.unlocked.append(key)
        super().__setitem__(key, value)


def test_stats_are_updated_under_the_lock_and_read_as_a_snapshot(engine, monkeypatch):
    watched = _WatchedStats(engine.stats, engine._stats_lock)
    monkeypatch.setattr(engine, "_stats", watched)
    before = engine.stats
    engine.generate(req(max_tokens=2))
    with pytest.raises(ContextLengthExceeded):
        engine.generate(req("word " * 2000))
    # the worker counts before it hands over the last chunk or the error: no wait needed
    after = engine.stats
    assert watched.writes == 2 and watched.unlocked == []
    assert after == {**before, "completed": before["completed"] + 1, "errors": before["errors"] + 1}
    after["completed"] += 100  # a copy: changing it changes nothing in the engine
    assert engine.stats["completed"] == before["completed"] + 1




def test_deadline_ends_generation(engine):
    r = engine.generate(req("Once upon a time", max_tokens=200, deadline_s=0.05))
    assert r.finish_reason == "deadline" and r.timings.completion_tokens < 200


def test_queue_full_is_busy():
    with Engine("gemma-3-270m", EngineConfig(n_ctx=256, n_threads=2, queue_size=1)) as eng:
        running = eng.submit(req(max_tokens=64))
        running.started.wait(60)
        queued = eng.submit(req(max_tokens=1))
        with pytest.raises(EngineBusy):
            eng.submit(req(max_tokens=1))
        running.cancel()
        list(running), list(queued)


def test_concurrent_submitters_are_served_one_at_a_time(engine):
    results, errors = [], []

    def worker(i):
        try:
            results.append(engine.generate(req(f"Item {i}:", max_tokens=3)))
        except EngineBusy as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join(120) for t in threads]
    assert len(results) + len(errors) == 4 and results


def test_timings_are_complete(engine):
    t = engine.generate(req(max_tokens=4)).timings.to_dict()
    for key in ("load_ms", "prompt_tokens", "cached_tokens", "prompt_ms", "ttft_ms",
                "completion_tokens", "decode_tok_s", "total_ms"):
        assert key in t
    assert t["prompt_tokens"] > 0 and t["total_ms"] >= t["ttft_ms"] > 0


def test_chat_uses_plain_fallback_for_base_model(engine):
    r = engine.generate(GenerationRequest(messages=[Message("user", "Say hello.")], max_tokens=8,
                                          sampling=GREEDY))
    assert r.decision.mode == "off" and r.decision.family == "fewshot-cot"
    assert "User:" not in r.text


@pytest.mark.parametrize("bad", [
    dict(max_tokens=0), dict(max_tokens=-1), dict(sampling=SamplingParams(temperature=-1)),
    dict(sampling=SamplingParams(top_p=0)), dict(think="maybe"), dict(reasoning_budget=-3),
    dict(sampling=SamplingParams(repeat_penalty=1e-300, temperature=1)),
    dict(sampling=SamplingParams(temperature=1e9)),
    dict(sampling=SamplingParams(frequency_penalty=2.5)), dict(sampling=SamplingParams(presence_penalty=-2.01)),
    dict(sampling=SamplingParams(frequency_penalty=float("nan"))),
])
def test_invalid_requests_are_rejected_before_queueing(engine, bad):
    with pytest.raises(InvalidRequest):
        engine.submit(req(**bad))


def test_missing_model_is_model_not_found():
    with pytest.raises(ModelNotFound):
        Engine("no-such-model")
    with pytest.raises(ModelNotFound):
        Engine("/nonexistent/dir/model.gguf")


@pytest.mark.parametrize("keep", [3, 2000, 0.5])
def test_truncated_gguf_is_invalid_model_file(tmp_path, default_model_path, keep):
    data = default_model_path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(data[:n])
    with pytest.raises(InvalidModelFile):
        Engine(str(bad))


def test_garbage_file_is_invalid_model_file(tmp_path):
    bad = tmp_path / "garbage.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 50)
    with pytest.raises(InvalidModelFile):
        Engine(str(bad))


def test_adaptive_threads_change_the_count_not_the_tokens(engine):
    """The default policy is adaptive: the governor switches llama.cpp's thread count
    mid-generation (its first trial comes after one 8-token window); greedy tokens stay
    those of a fixed-count engine."""
    from thinkling.runtime import Engine, EngineConfig

    assert EngineConfig().thread_policy == "adaptive"
    with Engine("gemma-3-270m", EngineConfig(n_ctx=1024, n_threads=2, queue_size=1, thread_policy="fixed")) as e:
        fixed = e.generate(req("The history of the printing press", max_tokens=40))
        assert e.threads() == {"policy": "fixed", "threads": 2} and e.backend.governor is None
    with Engine("gemma-3-270m", EngineConfig(n_ctx=1024, n_threads=2, queue_size=1)) as e:
        adaptive = e.generate(req("The history of the printing press", max_tokens=40))
        state = e.threads()
    assert state["policy"] == "adaptive" and state["max_threads"] == 2 and state["changes"] >= 1, state
    assert adaptive.tokens == fixed.tokens
    assert engine.threads()["policy"] == "adaptive"  # the session's engine, built with no policy given


def test_unknown_thread_policy_is_refused():
    from thinkling.runtime import Engine, EngineConfig

    with pytest.raises(InvalidRequest) as exc:
        Engine("gemma-3-270m", EngineConfig(thread_policy="turbo"))
    assert exc.value.param == "thread_policy"
