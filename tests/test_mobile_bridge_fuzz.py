"""Property: no input makes a bridge function raise or return anything but an
ASCII JSON string with ``"v": 1`` (and, for errors, a stable code).

Garbage of every kind (None, numbers, bytes, huge strings, malformed and deeply
nested JSON, wrong types in every field, odd callbacks) is fed to every entry
point with the real model loaded. Requests that happen to be valid are
cancelled at once (generate) or cut to one token (complete) to keep CPU low.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import thinkling.mobile_bridge as mb
from thinkling.mobile_bridge.bridge import LOAD_KEYS
from thinkling.mobile_bridge.jsonio import CODES
from thinkling.runtime.api.limits import LIMITS as NUMBERS

LOAD = {"model": "gemma-3-270m", "n_ctx": 512, "threads": 2, "queue_size": 2}
FIELDS = ["messages", "model", "stop", "think", "stream", "stream_options", "logit_bias", "tools", "functions",
          "tool_choice", "response_format", "logprobs", *NUMBERS]
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])

leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "developer", "robot"]) | json_value},
    optional={"content": st.text(max_size=40) | json_value, "name": json_value})
field_value = st.sampled_from([None, 0, -1, 1, 2.5, 1e308, "auto", "on", "x", True, [], {}, [1], ["a"]]) | json_value
body = st.dictionaries(st.sampled_from(FIELDS + ["bogus"]), field_value, max_size=6) | st.builds(
    lambda msgs, extra: {"messages": msgs, **extra}, st.lists(message, max_size=3),
    st.dictionaries(st.sampled_from(FIELDS[1:]), field_value, max_size=4))


def _dumps(v) -> str:
    return json.dumps(v, allow_nan=True)


garbage = (st.none() | st.integers() | st.floats() | st.booleans() | st.binary(max_size=24)
           | st.text(max_size=60) | json_value.map(_dumps) | body.map(_dumps) | body
           | st.sampled_from(["", "{", "[" * 100_000, '{"a": ' * 5000, "x" * ((1 << 20) + 7),
                              '{"messages": [{"role": "user", "content": "\\ud800"}]}', "NaN", "null", "1e999"]))


def parsed(arg):
    """What the bridge would see: the JSON object inside ``arg`` (None/"" mean {})."""
    if arg is None or arg in ("", b""):
        return {}
    try:
        return json.loads(arg) if isinstance(arg, (str, bytes)) else arg
    except (ValueError, RecursionError):
        return None


def check(out) -> dict:
    assert isinstance(out, str) and out.isascii()
    reply = json.loads(out)
    assert isinstance(reply, dict) and reply["v"] == 1
    if "error" in reply:
        assert reply["error"]["code"] in CODES and isinstance(reply["error"]["message"], str)
    return reply


@pytest.fixture(scope="module", autouse=True)
def loaded():
    check(mb.load_model(json.dumps(LOAD)))
    mb.set_callback(None)
    yield
    mb.set_callback(None)
    check(mb.load_model(json.dumps(LOAD)))


@FUZZ
@given(arg=garbage)
def test_generate_never_raises(arg):
    reply = check(mb.generate(arg))
    if "request_id" in reply:  # a valid request: stop it at once
        check(mb.cancel(reply["request_id"]))
        check(mb.poll(reply["request_id"]))


@FUZZ
@given(arg=garbage)
def test_complete_never_raises(arg):
    obj = parsed(arg)
    if isinstance(obj, dict) and not isinstance(arg, dict):  # keep any valid request to one token
        arg = _dumps({k: v for k, v in obj.items() if k != "max_completion_tokens"} | {"max_tokens": 1})
    check(mb.complete(arg))


@FUZZ
@given(rid=garbage, wait=st.none() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=5))
def test_poll_and_cancel_never_raise(rid, wait):
    check(mb.poll(rid))
    check(mb.poll(rid, wait))
    check(mb.cancel(rid))


@FUZZ
@given(arg=garbage)
def test_load_model_and_memory_pressure_never_raise(arg):
    # a valid configuration would reload or unload the model (seconds each): covered elsewhere
    obj = parsed(arg)
    assume(not (isinstance(obj, dict) and (set(obj) <= set(LOAD_KEYS) or set(obj) <= {"level"})))
    for fn in (mb.load_model, mb.memory_pressure):
        assert "error" in check(fn(arg))


class NotCallableOnEvent:
    onEvent = 5  # noqa: N815


@FUZZ
@given(cb=garbage | st.sampled_from([print, NotCallableOnEvent(), lambda: None, lambda a, b: None, object()]))
def test_set_callback_never_raises(cb):
    check(mb.set_callback(cb))
    check(mb.set_callback(None))


@FUZZ
@given(args=st.lists(garbage, min_size=1, max_size=3))
def test_wrong_arity_never_raises(args):
    for fn in (mb.info, mb.list_models, mb.unload_model, mb.shutdown):
        assert check(fn(*args))["error"]["code"] == "invalid_request"
    for fn in (mb.generate, mb.complete, mb.load_model, mb.memory_pressure, mb.cancel, mb.set_callback):
        if len(args) > 1:
            assert check(fn(*args))["error"]["code"] == "invalid_request"


def test_odd_callbacks_do_not_break_the_stream():
    """A callback with the wrong signature or one that raises: events land in poll."""
    for cb in (lambda: None, lambda a, b: None, int):  # int(event_json) raises ValueError
        check(mb.set_callback(cb))
        rid = check(mb.generate(json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})))
        events, end = [], time.monotonic() + 120
        while not any(e["type"] in ("done", "error", "cancelled") for e in events):
            assert time.monotonic() < end
            events += check(mb.poll(rid["request_id"], 500))["events"]
        assert events[-1]["type"] == "done"
    check(mb.set_callback(None))


def test_the_bridge_still_serves_after_the_fuzz():
    info = check(mb.info())
    assert info["state"] == "ready"
    reply = check(mb.complete(json.dumps({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                                          "temperature": 0})))
    assert reply["finish_reason"] in ("stop", "length") and reply["timings"]["completion_tokens"] >= 1
