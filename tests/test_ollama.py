"""Ollama's API on the real server, driven by Ollama's official Python client
(``ollama``, unchanged): ``thinkling serve --model arith-student`` in a
subprocess on a loopback port (the tiny registered student, which reasons in
``<think>``), with an API key, as ``tests/test_server.py`` starts it.

Where the client's typed responses drop thinkling's extra fields (``decision``),
the same request goes through httpx. A malformed JSON body goes through the
client's raw request path (``Client._request_raw``): its public methods always
send valid JSON. The one case no registered model can reach (``think: true`` on a
model without a reasoning mode) runs on the app over the scripted backend.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import re

import httpx
import jsonschema
import ollama
import pytest
from test_server import COUNTING, KEY, _clean_env, _raw_request, server, start_server, stop_server  # noqa: F401

MODEL = "arith-student"
ASK = [{"role": "user", "content": "What is 12 + 30?"}]
GREEDY = {"temperature": 0, "num_predict": 48}
SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"],
          "additionalProperties": False}


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    log = tmp_path_factory.mktemp("ollama") / "server.log"
    srv = start_server(log, "--model", MODEL, "--queue-size", "2", "--max-tokens-cap", "64",
                       "--default-max-tokens", "32", env={**_clean_env(), "THINKLING_API_KEY": KEY})
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def client(student):
    return ollama.Client(host=student.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)


def post(srv, path: str, body: dict) -> dict:
    r = srv.post(path, body)
    assert r.status_code == 200, r.text
    return r.json()


def _counters_ok(r) -> None:
    assert r.done is True and r.done_reason in ("stop", "length")
    for name in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count",
                 "eval_duration"):
        assert isinstance(getattr(r, name), int), name
    assert r.prompt_eval_count > 0 and r.eval_count > 0 and r.eval_duration > 0 and r.prompt_eval_duration > 0
    assert r.total_duration >= r.eval_duration  # wall time from arrival covers the decode


def test_think_true_chain_in_thinking_answer_in_content(client, student):
    r = client.chat(model=MODEL, messages=ASK, think=True, options=GREEDY)
    _counters_ok(r)
    assert r.message.role == "assistant"
    assert r.message.thinking and r.message.content.strip()
    for text in (r.message.thinking, r.message.content):
        assert "<think>" not in text and "</think>" not in text
    # the same request through the OpenAI route gives the same split and token counts
    o = post(student, "/v1/chat/completions", {"model": MODEL, "messages": ASK, "think": "on", "temperature": 0,
                                              "max_tokens": 48})
    assert (r.message.thinking, r.message.content) == (o["choices"][0]["message"]["reasoning_content"],
                                                       o["choices"][0]["message"]["content"])
    assert (r.prompt_eval_count, r.eval_count) == (o["usage"]["prompt_tokens"], o["usage"]["completion_tokens"])
    raw = post(student, "/api/chat", {"model": MODEL, "messages": ASK, "think": True, "stream": False,
                                     "options": GREEDY})
    assert raw["decision"]["mode"] == "on" and raw["decision"]["requested"] == "on"
    capped = post(student, "/api/chat", {"model": MODEL, "messages": ASK, "think": True, "stream": False,
                                         "options": GREEDY, "reasoning_budget": 2})  # thinkling's extension
    assert capped["decision"]["budget"] == 2 and capped["message"]["thinking"] != r.message.thinking


def test_think_false_no_thinking(client, student):
    r = client.chat(model=MODEL, messages=ASK, think=False, options=GREEDY)
    _counters_ok(r)
    assert not r.message.thinking and r.message.content.strip()
    raw = post(student, "/api/chat", {"model": MODEL, "messages": ASK, "think": False, "stream": False,
                                     "options": GREEDY})
    assert raw["decision"]["mode"] == "off" and raw["message"]["content"] == r.message.content


def test_think_auto_passes_through(client, student):
    # the client's type hints take any string for think, so "auto" goes through chat() itself
    r = client.chat(model=MODEL, messages=ASK, think="auto", options=GREEDY)
    _counters_ok(r)
    assert r.message.content.strip()
    raw = post(student, "/api/chat", {"model": MODEL, "messages": ASK, "think": "auto", "stream": False,
                                     "options": GREEDY})
    assert raw["decision"]["requested"] == "auto" and raw["decision"]["mode"] in ("on", "off", "post")
    assert bool(raw["message"].get("thinking")) == (raw["decision"]["mode"] != "off")
    assert (raw["message"]["content"], raw["message"].get("thinking")) == (r.message.content, r.message.thinking)


def test_streaming_chat_joins_to_the_whole_answer(client):
    whole = client.chat(model=MODEL, messages=ASK, think=True, options=GREEDY)
    parts = list(client.chat(model=MODEL, messages=ASK, think=True, options=GREEDY, stream=True))
    assert len(parts) > 2 and all(p.done is False for p in parts[:-1])
    _counters_ok(parts[-1])
    assert "".join(p.message.thinking or "" for p in parts) == whole.message.thinking
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count


def test_stream_is_ndjson(student):
    with httpx.stream("POST", student.url + "/api/chat", headers={**student.auth, "Content-Type": "application/json"},
                      json={"model": MODEL, "messages": ASK, "think": True, "options": GREEDY}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]  # stream defaults to true, as Ollama's
    assert [x["done"] for x in lines] == [False] * (len(lines) - 1) + [True]
    assert lines[-1]["decision"]["mode"] == "on" and lines[-1]["native_done_reason"] == "stop"


def test_generate_is_the_prompt_as_a_user_turn(client):
    chat = client.chat(model=MODEL, messages=ASK, think=False, options=GREEDY)
    gen = client.generate(model=MODEL, prompt=ASK[0]["content"], think=False, options=GREEDY)
    _counters_ok(gen)
    assert gen.response == chat.message.content and not gen.thinking
    parts = list(client.generate(model=MODEL, prompt=ASK[0]["content"], think=True, options=GREEDY, stream=True))
    thought = client.generate(model=MODEL, prompt=ASK[0]["content"], think=True, options=GREEDY)
    assert thought.thinking and "".join(p.thinking or "" for p in parts) == thought.thinking
    assert "".join(p.response for p in parts) == thought.response


def test_format_schema_and_json(client):
    r = client.chat(model=MODEL, messages=ASK, think=False, format=SCHEMA, options=GREEDY)
    jsonschema.validate(json.loads(r.message.content), SCHEMA)
    thought = client.chat(model=MODEL, messages=ASK, think=True, format=SCHEMA, options=GREEDY)
    assert thought.message.thinking  # the grammar binds the answer, not the reasoning
    jsonschema.validate(json.loads(thought.message.content), SCHEMA)
    g = client.generate(model=MODEL, prompt=ASK[0]["content"], think=False, format="json", options=GREEDY)
    assert isinstance(json.loads(g.response), dict)


def _manifest_entry(name: str) -> tuple[dict, dict]:
    from thinkling.runtime import models

    ref = models.resolve(name)
    return ref.manifest, ref.file_entry


def test_tags_show_ps_version(client, student):
    manifest, entry = _manifest_entry(MODEL)
    listed = {m.model: m for m in client.list().models}
    m = listed[f"{MODEL}:latest"]
    assert m.digest == entry["sha256"] and m.size == entry["size_bytes"]
    d = m.details
    assert (d.format, d.family, d.quantization_level) == ("gguf", manifest["architecture"], entry["quant"].upper())
    assert re.fullmatch(r"\d+\.\d+[KMB]", d.parameter_size)
    shown = client.show(MODEL)
    assert shown.details == d and "thinking" in shown.capabilities and "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == manifest["architecture"]
    assert shown.modelinfo["thinkling.loaded"] is True and shown.template
    assert client.show(f"{MODEL}:latest").details == d
    ps = client.ps().models
    assert [p.model for p in ps] == [f"{MODEL}:latest"] and ps[0].details == d
    v = httpx.get(student.url + "/api/version", headers=student.auth, timeout=30)
    assert v.status_code == 200 and v.json()["version"]


def test_errors_surface_as_response_error(client, student):
    with pytest.raises(ollama.ResponseError) as e:
        client.chat(model="no-such-model", messages=ASK)
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        client.show("no-such-model")
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:  # the public methods cannot send broken JSON
        client._request_raw("POST", "/api/chat", content=b'{"model": "arith-student", "messages": [')
    assert e.value.status_code == 400 and "JSON" in e.value.error
    cases = [({"options": {"temperature": -1}}, "options.temperature"), ({"options": {"num_predict": 0}},
             "options.num_predict"), ({"think": "high"}, "think"), ({"options": {"mirostat": 2}}, "options.mirostat"),
             ({"keep_alive": "soon"}, "keep_alive"), ({"messages": [{"role": "robot", "content": "hi"}]}, "role")]
    for extra, named in cases:
        with pytest.raises(ollama.ResponseError) as e:
            client.chat(**{"model": MODEL, "messages": ASK, **extra})
        assert e.value.status_code == 400 and named in e.value.error, (extra, e.value.error)
    with pytest.raises(ollama.ResponseError) as e:  # streaming: the error comes before the first line
        list(client.chat(model=MODEL, messages=ASK, options={"top_p": 5}, stream=True))
    assert e.value.status_code == 400
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=student.url, timeout=30).list()
    assert e.value.status_code == 401
    assert student.metric("thinkling_http_requests_total", endpoint="/api/chat", status="400") >= len(cases) + 1
    assert student.metric("thinkling_http_requests_total", endpoint="/api/chat", status="200") > 0


def test_load_reply_and_options_ollama_ignores(client):
    r = client.generate(model=MODEL, keep_alive="10m")  # no prompt: Ollama's "load the model" call
    assert r.done and r.done_reason == "load" and r.response == ""
    a = client.chat(model=MODEL, messages=ASK, think=False, keep_alive=0,
                    options={**GREEDY, "num_ctx": 4096, "num_gpu": 0, "typical_p": 1.0, "not_an_option": 1})
    assert a.message.content == client.chat(model=MODEL, messages=ASK, think=False, options=GREEDY).message.content


# --- queueing and cancel on the embedded Gemma (long enough to drop mid-way): test_server's server

@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
def test_dropped_ollama_client_cancels_generation(server, stream):
    cancelled = server.metric("thinkling_engine_generations_total", outcome="cancelled")
    gone = server.metric("thinkling_client_disconnects_total")
    s = _raw_request(server, "/api/generate", {"model": "gemma-3-270m", "prompt": COUNTING, "raw": True,
                                                 "stream": stream, "options": {"temperature": 0, "num_predict": -1}})
    if stream:
        s.settimeout(120)
        received = b""
        while b'"done":false' not in received:  # the first NDJSON line: generation is under way
            part = s.recv(4096)
            assert part, received
            received += part
    else:
        server.wait_for(lambda: server.metric("thinkling_queue_depth") >= 1, "the generation to start")
    s.close()
    server.wait_for(lambda: server.metric("thinkling_engine_generations_total", outcome="cancelled") > cancelled,
                    "the engine to report the generation cancelled")
    assert server.metric("thinkling_client_disconnects_total") > gone
    server.wait_for(lambda: server.metric("thinkling_queue_depth") == 0, "the slot to be freed")


def test_ollama_burst_is_answered_or_shed(server):
    c = ollama.Client(host=server.url, headers=server.auth, timeout=120)

    def one(i):
        try:
            c.chat(model="gemma-3-270m", messages=[{"role": "user", "content": f"Count to {i}"}],
                   options={"num_predict": 4})
            return 200
        except ollama.ResponseError as e:
            assert e.status_code != 429 or "queue" in e.error, e.error
            return e.status_code

    with cf.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses  # queue 2 + 1 running < 8
    server.wait_for(lambda: httpx.get(server.url + "/health").json()["queue_depth"] == 0, "the queue to drain")


def test_server_log_is_clean(student):
    log = student.log.read_text()
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


def test_think_true_on_a_model_that_cannot_think():
    """Ollama answers 400 '"<model>" does not support thinking'; so does thinkling."""
    from test_server_unit import client_for, engine_for

    engine = engine_for()
    try:
        ctl = engine.controller
        ctl.format = dataclasses.replace(ctl.format, modes=("off",), default_mode="off")
        c = client_for(engine)
        body = {"model": "scripted", "messages": [{"role": "user", "content": "12 + 30"}], "stream": False}
        r = c.post("/api/chat", json={**body, "think": True})
        assert r.status_code == 400 and r.json() == {"error": '"scripted" does not support thinking'}
        r = c.post("/api/chat", json={**body, "think": False})
        assert r.status_code == 200 and r.json()["decision"]["mode"] == "off"
        r = c.post("/api/chat", json={**body, "think": False, "reasoning_budget": 2, "deadline_ms": 60000})
        assert r.status_code == 200  # thinkling's extensions ride along, checked as on the OpenAI routes
        shown = c.post("/api/show", json={"model": "scripted"})
        assert shown.status_code == 200 and shown.json()["capabilities"] == ["completion"]
    finally:
        engine.close()


def _hostile_bodies() -> list[bytes]:
    m, u = {"model": "scripted"}, [{"role": "user", "content": "12 + 30"}]
    chat = [{"messages": "hi"}, {"messages": [1]}, {"messages": [{"role": "user", "content": 5}]},
            {"messages": [{"role": "tool", "content": "x"}]}, {"options": []}, {"options": {"stop": 5}},
            {"options": {"stop": ["a"] * 40}}, {"options": {"num_predict": True}}, {"options": {"seed": 2**70}},
            {"options": {"repeat_last_n": -5}}, {"format": "xml"}, {"think": 1}, {"think": [1]}, {"stream": "yes"},
            {"keep_alive": []}, {"tools": [{"type": "function"}]}, {"images": ["aGk="]}, {"model": 5}, {"model": None},
            {"deadline_ms": 0}, {"reasoning_budget": -1}]
    generate = [{"prompt": 5}, {"prompt": "x", "raw": "yes"}, {"prompt": "x", "raw": True, "format": "json"},
                {"prompt": "x", "context": [1, 2]}, {"prompt": "x", "system": 5}, {"prompt": "x", "template": "{{.P}}"},
                {"prompt": "x" * 60000}, {"prompt": "x", "suffix": "y"}]
    raw = [b"", b"{", b"[]", b"null", b'"x"', b"[" * 20000 + b"]" * 20000, b'{"model": ' + b"9" * 5000 + b"}",
           b'{"model": NaN}']
    surrogate = b'{"model": "scripted", "messages": [{"role": "user", "content": "\\ud800"}]}'
    return ([("/api/chat", json.dumps({**m, "messages": u, **b}).encode()) for b in chat] + [("/api/chat", surrogate)]
            + [("/api/generate", json.dumps({**m, **b}).encode()) for b in generate]
            + [(path, b) for b in raw for path in ("/api/chat", "/api/generate", "/api/show")])


def test_hostile_bodies_get_a_400_in_ollamas_shape():
    from test_server_unit import client_for

    c = client_for(max_body_bytes=65536)
    for path, body in _hostile_bodies():
        r = c.post(path, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and isinstance(r.json()["error"], str), (path, body[:80], r.text[:200])
    base = json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "1 + 2"}], "stream": False,
                       "options": {"temperature": 0, "num_predict": 4}}).encode()
    rnd = __import__("random").Random(0)
    for _ in range(200):  # cut, flipped and dropped bytes: a 200 or a 4xx, never a 5xx
        b = bytearray(base)
        i = rnd.randrange(len(b))
        b = [b[:i], b[:i] + bytes([rnd.randrange(32, 127)]) + b[i + 1:], b[:i] + b[i + 1:]][rnd.randrange(3)]
        r = c.post("/api/chat", content=bytes(b), headers={"Content-Type": "application/json"})
        assert r.status_code < 500 and (r.status_code == 200 or "error" in r.json()), bytes(b)
