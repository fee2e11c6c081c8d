"""Server routes without llama.cpp: settings precedence, the schema mapping,
and the app over a real ``Engine`` on the scripted backend (so reasoning/answer
splitting is exact, and queueing, busy and worker errors are the engine's own).

The real server on the real model is in test_server.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from thinkling.runtime.api import chat_request, completion_request
from thinkling.runtime.engine import Engine, EngineConfig
from thinkling.runtime.models import ModelRef
from thinkling.runtime.server import create_app, load_settings
from thinkling.runtime.server.schemas import ChatCompletionRequest, CompletionRequest
from thinkling.runtime.server.settings import ServerSettings, is_loopback
from thinkling.runtime.types import Chunk, Timings
from scripted_backend import ScriptedBackend

REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "thinkling-arith"})
USER = [{"role": "user", "content": "12 + 30"}]


class CuedBackend(ScriptedBackend):
    """The scripted backend with failures on cue: ``fail_at`` raises on that eval
    (1-based), ``gate`` (an Event) holds every eval until it is set."""

    def __init__(self, fail_at=None, error=None, gate=None):
        super().__init__()
        self.fail_at, self.error, self.gate = fail_at, error, gate

    def eval(self, tokens):
        if self.gate is not None:
            self.gate.wait(30)
        if self.fail_at is not None and self.evals + 1 >= self.fail_at:
            raise self.error
        return super().eval(tokens)


def engine_for(backend=None, queue_size=8) -> Engine:
    """A real ``Engine`` (queue, worker, controller) over the scripted backend."""
    return Engine.from_backend(backend or CuedBackend(), REF, EngineConfig(queue_size=queue_size), profile=None)


def client_for(engine=None, **settings):
    # the app serves an engine the caller opened and does not close it: a new one per client
    app = create_app(ServerSettings(**settings), engine or engine_for())
    return TestClient(app, base_url="http://127.0.0.1:8080")


# --- settings -------------------------------------------------------------------

def test_settings_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    cfg = tmp_path / "serve.toml"
    cfg.write_text('port = 1111\nqueue_size = 3\ncors_origins = ["http://a.test"]\n')
    monkeypatch.setenv("THINKLING_PORT", "2222")
    monkeypatch.setenv("THINKLING_CORS_ORIGINS", "http://b.test,http://c.test")
    s = load_settings(cfg, port=3333)
    assert (s.port, s.queue_size, s.cors_origins) == (3333, 3, ["http://b.test", "http://c.test"])
    assert load_settings(cfg).port == 2222
    monkeypatch.delenv("THINKLING_PORT")
    assert load_settings(cfg).port == 1111
    js = tmp_path / "serve.json"
    js.write_text(json.dumps({"port": 4444}))
    assert load_settings(js).port == 4444 and ServerSettings().port == 8080


def test_settings_reject_unknown_file_keys_and_bad_values(tmp_path):
    cfg = tmp_path / "serve.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ValidationError):
        load_settings(cfg)
    with pytest.raises(ValueError, match="toml or .json"):
        load_settings(tmp_path / "serve.yaml")
    with pytest.raises(ValidationError):
        ServerSettings(default_think="maybe")
    assert ServerSettings(max_tokens_cap=16).default_max_tokens == 16  # the cap wins


def test_bind_policy():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com"))
    assert ServerSettings().bind_problem() is None
    assert "--api-key" in ServerSettings(host="0.0.0.0").bind_problem()
    assert ServerSettings(host="0.0.0.0", api_key="k").bind_problem() is None
    assert ServerSettings(host="0.0.0.0", insecure=True).bind_problem() is None


# --- the one mapping ---------------------------------------------------------------

def to_generation_request(body, settings):
    """What the routes do: pydantic validates, ``runtime.api`` maps."""
    fn = chat_request if isinstance(body, ChatCompletionRequest) else completion_request
    return fn(body.model_dump(), settings.request_defaults())


def test_mapping_defaults_caps_and_thinking_fields():
    s = ServerSettings(max_tokens_cap=100, default_max_tokens=10, default_think="off", request_timeout_s=60)
    r = to_generation_request(ChatCompletionRequest.model_validate({"messages": USER}), s)
    assert (r.max_tokens, r.think, r.deadline_s, r.reasoning_budget) == (10, "off", 60, None)
    body = {"messages": [{"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                         {"role": "assistant", "content": None}, *USER],
            "max_tokens": 5000, "max_completion_tokens": 7, "temperature": 0, "seed": -1, "stop": "\n",
            "think": "on", "reasoning_budget": 12, "deadline_ms": 1500, "user": "ignored", "store": True,
            "frequency_penalty": 0.5, "presence_penalty": -1.25}
    r = to_generation_request(ChatCompletionRequest.model_validate(body), s)
    assert [(m.role, m.content) for m in r.messages] == [("system", "be brief"), ("assistant", ""),
                                                       ("user", "12 + 30")]
    assert (r.max_tokens, r.think, r.reasoning_budget, r.deadline_s, r.stop) == (7, "on", 12, 1.5, ["\n"])
    assert r.sampling.temperature == 0 and r.sampling.seed == (1 << 64) - 1
    assert (r.sampling.frequency_penalty, r.sampling.presence_penalty) == (0.5, -1.25)
    tiny = ChatCompletionRequest.model_validate({"messages": USER, "deadline_ms": 5e-324})
    assert 0 < to_generation_request(tiny, s).deadline_s < 1e-6  # positive stays positive
    r = to_generation_request(CompletionRequest.model_validate({"prompt": ["hi"], "max_tokens": 500}), s)
    assert (r.prompt, r.max_tokens) == ("hi", 100)
    assert r.speculative is None  # the engine's default (serve --speculative) applies
    r = to_generation_request(ChatCompletionRequest.model_validate({"messages": USER, "speculative": "ngram"}), s)
    assert r.speculative == "ngram"
    with pytest.raises(ValueError):
        ChatCompletionRequest.model_validate({"messages": USER, "speculative": "draft-model"})


# --- routes over the stand-in engine -----------------------------------------------

def test_reasoning_split_non_streaming_and_streaming():
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"messages": USER, "think": "on", "reasoning_budget": 5,
                                                 "temperature": 0, "max_tokens": 40})
        assert r.status_code == 200, r.text
        body = r.json()
        msg = body["choices"][0]["message"]
        assert (msg["content"], msg["reasoning_content"]) == ("42", "abcde")
        assert body["decision"]["mode"] == "on" and body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5
        assert body["choices"][0]["finish_reason"] == "stop" and "predicted_n" in body["timings"]

        with c.stream("POST", "/v1/chat/completions",
                      json={"messages": USER, "think": "on", "reasoning_budget": 3, "temperature": 0,
                            "stream": True, "stream_options": {"include_usage": True}}) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
        events = [json.loads(ln[6:]) for ln in lines[:-1]]
        deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
        assert deltas[0]["role"] == "assistant"
        assert "".join(d.get("reasoning_content", "") for d in deltas) == "abc"
        assert "".join(d.get("content", "") for d in deltas) == "42"
        final = [e for e in events if e["choices"] and e["choices"][0]["finish_reason"]]
        assert len(final) == 1 and final[0]["decision"]["mode"] == "on" and "timings" in final[0]
        assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


def test_health_is_503_while_loading_then_200():
    release = threading.Event()

    def slow_loader(settings):
        release.wait(30)
        return engine_for()

    app = create_app(ServerSettings(), loader=slow_loader)
    with TestClient(app, base_url="http://127.0.0.1:8080") as c:
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        r = c.post("/v1/chat/completions", json={"messages": USER})
        assert r.status_code == 503 and r.headers["retry-after"] and r.json()["error"]["type"] == "unavailable_error"
        release.set()
        for _ in range(300):
            if app.state.thinkling.engine is not None:
                break
            threading.Event().wait(0.01)
        assert c.get("/health").json()["status"] == "ok"


def test_failed_load_is_reported_not_crashed():
    def broken(settings):
        raise RuntimeError("no such model")

    app = create_app(ServerSettings(), loader=broken)
    with TestClient(app, base_url="http://127.0.0.1:8080") as c:
        for _ in range(300):
            if app.state.thinkling.load_error is not None:
                break
            threading.Event().wait(0.01)
        r = c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "error" and "no such model" in r.json()["error"]["message"]


def test_busy_is_429_with_retry_after():
    gate = threading.Event()
    eng = engine_for(CuedBackend(gate=gate), queue_size=1)
    try:
        with client_for(eng) as c:
            running = eng.submit(to_generation_request(ChatCompletionRequest.model_validate(
                {"messages": USER}), ServerSettings()))  # held at its first eval by the gate
            assert running.started.wait(10)
            waiting = eng.submit(to_generation_request(ChatCompletionRequest.model_validate(
                {"messages": USER}), ServerSettings()))
            r = c.post("/v1/chat/completions", json={"messages": USER})
            gate.set()
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["code"] == "busy"
            for h in (running, waiting):
                list(h)
    finally:
        gate.set()
        eng.close()


@pytest.mark.parametrize("stream", [False, True])
def test_context_length_is_a_400_even_when_streaming(stream):
    with client_for() as c:
        r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "1" * 600}],
                                                 "stream": stream})
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert r.json()["error"] == {"message": "prompt has 604 tokens but the context holds 512",
                                 "type": "invalid_request_error", "param": "messages",
                                 "code": "context_length_exceeded"}


def test_error_after_first_chunk_is_reported_in_band():
    eng = engine_for(CuedBackend(fail_at=3, error=RuntimeError("decode failed")))
    with client_for(eng) as c:
        with c.stream("POST", "/v1/chat/completions", json={"messages": USER, "stream": True,
                                                            "think": "off"}) as s:
            assert s.status_code == 200
            lines = [ln for ln in s.iter_lines() if ln.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert last["error"]["type"] == "server_error" and "decode failed" not in last["error"]["message"]
    assert eng.stats["errors"] == 1


def test_unexpected_worker_error_is_a_500_in_openai_shape():
    eng = engine_for(CuedBackend(fail_at=1, error=RuntimeError("bug")))
    with TestClient(create_app(ServerSettings(), eng), base_url="http://127.0.0.1:8080",
                    raise_server_exceptions=False) as c:
        r = c.post("/v1/chat/completions", json={"messages": USER})
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"


def test_cors_is_off_by_default_and_on_when_configured():
    pre = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}
    with client_for() as c:
        r = c.options("/v1/chat/completions", headers=pre)
        assert "access-control-allow-origin" not in r.headers
    with client_for(cors_origins=["http://app.test"]) as c:
        r = c.options("/v1/chat/completions", headers=pre)
        assert r.headers["access-control-allow-origin"] == "http://app.test"


def test_host_header_allowlist_on_loopback():
    with client_for() as c:
        assert c.get("/v1/models").status_code == 200
        r = c.get("/v1/models", headers={"Host": "attacker.example"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host"


def test_timings_zero_safe():
    from thinkling.runtime.api import timings_dict, usage_dict

    t = timings_dict(Timings())
    assert t["prompt_per_second"] is None and t["predicted_per_second"] is None
    assert usage_dict(Timings(prompt_tokens=3, completion_tokens=2), 0)["total_tokens"] == 5
    assert Chunk().finish_reason is None
