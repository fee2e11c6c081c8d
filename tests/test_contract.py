"""One contract, two transports: the same table of chat requests runs through
the mobile bridge (``complete`` and ``generate``/``poll``) and through the real
HTTP server (``thinkling serve`` on a loopback port, streaming and not), and the
outcomes must agree: accepted or refused, the error code and the field it
names, and for accepted requests the text, finish reason and thinking decision.

Both sides load the embedded gemma-3-270m with n_ctx 512 and 2 threads; every
generation is greedy and a few tokens long. The HTTP side is skipped only if
``runtime.server.app`` cannot be imported.

HTTP status/code -> bridge code (the documented correspondence, docs/mobile.md):
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

import thinkling.mobile_bridge as mb

REPO = Path(__file__).resolve().parent.parent
MODEL = "gemma-3-270m"
LOAD = {"model": MODEL, "n_ctx": 512, "threads": 2, "queue_size": 2}
TERMINAL = {"done", "error", "cancelled"}

# (HTTP status, OpenAI-shape error code) -> the bridge's stable code
HTTP_TO_BRIDGE = {
    (400, "invalid_json"): "invalid_json",
    (400, "invalid_utf8"): "invalid_json",
    (400, "invalid_value"): "invalid_request",
    (400, "missing_required_parameter"): "invalid_request",
    (400, "invalid_request"): "invalid_request",
    (400, "context_length_exceeded"): "context_length_exceeded",
    (413, "request_too_large"): "invalid_request",
    (404, "model_not_found"): "model_not_found",
    (429, "busy"): "busy",
    (503, "not_loaded"): "not_loaded",
    (503, "model_not_ready"): "not_loaded",
}
__doc__ += "\n".join(f"    {s} {c!r:32} -> {b}" for (s, c), b in HTTP_TO_BRIDGE.items())


@dataclass
class Outcome:
    """What a transport made of one request, in transport-neutral terms."""

    code: str | None = None  # None: accepted
    param: str | None = None
    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None  # the runtime's (HTTP: native_finish_reason)
    decision: dict | None = None
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.code is None


@dataclass(frozen=True)
class Case:
    name: str
    body: dict | str | bytes  # str/bytes: sent as is (malformed on purpose)
    code: str | None = None  # expected error code; None: accepted
    param: str | None = None
    check: Callable[[Outcome], bool] | None = None
    same_text: bool = True  # greedy: every transport must produce the same text


def chat(content="What is 2 + 2?", **kw) -> dict:
    kw.setdefault("max_tokens", 3)
    kw.setdefault("temperature", 0)
    return {"messages": [{"role": "user", "content": content}], **kw}


MSG = chat()["messages"]
THINK = ("auto", "on", "off", "post")

CASES = [
    # --- accepted: fields, defaults, think modes -------------------------------
    Case("plain", chat()),
    Case("model-named", chat(model=MODEL)),
    Case("system-developer-parts", {"messages": [
        {"role": "developer", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Name a color."}, {"type": "text", "text": "One word."}]},
        {"role": "assistant", "content": None},
        {"role": "user", "content": "Again."}], "max_tokens": 3, "temperature": 0}),
    Case("max-tokens-1", chat(max_tokens=1), check=lambda o: o.completion_tokens <= 1),
    Case("max-completion-tokens-wins", chat(max_tokens=8, max_completion_tokens=2),
         check=lambda o: o.completion_tokens <= 2),
    Case("stop-string", chat("Count: one, two, three,", max_tokens=6, stop=[","]),
         check=lambda o: "," not in o.text),
    Case("stop-as-string", chat(stop="\n"), check=lambda o: "\n" not in o.text),
    Case("sampling-fields", chat(temperature=0.7, top_p=0.9, top_k=20, min_p=0.1, repeat_penalty=1.1, seed=7)),
    Case("negative-seed", chat(temperature=0.7, seed=-1)),
    Case("int-temperature", chat(temperature=1, seed=3)),
    # greedy alone answers "2 + 2 = 4"; strong OpenAI penalties change it, identically on every transport
    Case("openai-penalties", chat(max_tokens=8, frequency_penalty=2, presence_penalty=2, n=1, stream_options=None),
         check=lambda o: "2 + 2 = 4" not in o.text),
    Case("unknown-fields-ignored", {**chat(), "user": "u1", "metadata": {"a": 1}, "store": False}),
    *[Case(f"think-{mode}", chat(think=mode, reasoning_budget=2),
           check=lambda o, m=mode: o.decision is not None and o.decision.get("requested") == m) for mode in THINK],
    Case("deadline", chat("Tell me a long story.", max_tokens=32, deadline_ms=1),
         check=lambda o: o.finish_reason == "deadline", same_text=False),
    # --- refused -------------------------------------------------------------------
    Case("malformed-json", '{"messages": [', code="invalid_json"),
    Case("invalid-utf8", b'{"messages": "\xff"}', code="invalid_json"),
    Case("not-an-object", "[1, 2]", code="invalid_request"),
    Case("no-messages", {}, code="invalid_request", param="messages"),
    Case("empty-messages", {"messages": []}, code="invalid_request", param="messages"),
    Case("unknown-role", {"messages": [{"role": "robot", "content": "x"}]}, code="invalid_request",
         param="messages[0].role"),
    Case("null-user-content", {"messages": [{"role": "user", "content": None}]}, code="invalid_request",
         param="messages[0].content"),
    Case("image-part", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
         code="invalid_request", param="messages[0].content[0].type"),
    Case("lone-surrogate", {"messages": [{"role": "user", "content": "\ud800"}]}, code="invalid_request",
         param="messages[0].content"),
    Case("max-tokens-0", chat(max_tokens=0), code="invalid_request", param="max_tokens"),
    Case("max-tokens-negative", chat(max_tokens=-1), code="invalid_request", param="max_tokens"),
    Case("max-tokens-string", chat(max_tokens="5"), code="invalid_request", param="max_tokens"),
    Case("max-tokens-float", chat(max_tokens=1.5), code="invalid_request", param="max_tokens"),
    Case("max-tokens-bool", chat(max_tokens=True), code="invalid_request", param="max_tokens"),
    Case("temperature-negative", chat(temperature=-0.5), code="invalid_request", param="temperature"),
    Case("temperature-string", chat(temperature="hot"), code="invalid_request", param="temperature"),
    Case("top-p-zero", chat(top_p=0), code="invalid_request", param="top_p"),
    Case("top-k-negative", chat(top_k=-1), code="invalid_request", param="top_k"),
    Case("repeat-penalty-zero", chat(repeat_penalty=0), code="invalid_request", param="repeat_penalty"),
    Case("frequency-penalty-over-2", chat(frequency_penalty=2.5), code="invalid_request", param="frequency_penalty"),
    Case("presence-penalty-string", chat(presence_penalty="high"), code="invalid_request", param="presence_penalty"),
    Case("seed-too-big", chat(seed=1 << 64), code="invalid_request", param="seed"),
    Case("stop-too-many", chat(stop=["a"] * 9), code="invalid_request", param="stop"),
    Case("stop-not-text", chat(stop=5), code="invalid_request", param="stop"),
    Case("think-unknown", chat(think="maybe"), code="invalid_request", param="think"),
    Case("reasoning-budget-negative", chat(reasoning_budget=-1), code="invalid_request", param="reasoning_budget"),
    Case("deadline-zero", chat(deadline_ms=0), code="invalid_request", param="deadline_ms"),
    Case("stream-not-bool", chat(stream="yes"), code="invalid_request", param="stream"),
    Case("n-2", chat(n=2), code="invalid_request", param="n"),
    Case("n-null", chat(n=None), code="invalid_request", param="n"),
    Case("stream-null", chat(stream=None), code="invalid_request", param="stream"),
    Case("tools", chat(tools=[{"type": "function", "function": {"name": "f"}}]), code="invalid_request",
         param="tools"),
    Case("logit-bias", chat(logit_bias={"1": 5.0}), code="invalid_request", param="logit_bias"),
    Case("response-format-unknown", chat(response_format={"type": "xml"}), code="invalid_request",
         param="response_format.type"),
    Case("json-schema-unenforceable", chat(response_format={"type": "json_schema", "json_schema": {
        "name": "n", "schema": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}}}),
         code="invalid_request", param="response_format.json_schema.schema"),
    Case("logprobs", chat(logprobs=True), code="invalid_request", param="logprobs"),
    Case("unknown-model", chat(model="gpt-4o"), code="model_not_found", param="model"),
    Case("prompt-too-long", chat("word " * 800), code="context_length_exceeded"),
]


def _raw(body) -> bytes:
    if isinstance(body, bytes):
        return body
    return (body if isinstance(body, str) else json.dumps(body)).encode("utf-8", "surrogatepass")


def _with(body, **extra):
    """``body`` plus ``extra`` fields it does not set itself (a case about ``stream`` keeps its own)."""
    return {**extra, **body} if isinstance(body, dict) else body


def test_http_schema_bounds_come_from_the_limits_table():
    """The HTTP layer's pydantic bounds (what OpenAPI shows and pydantic checks) are
    the runtime's table, row for row, so the server and the bridge cannot drift."""
    pytest.importorskip("thinkling.runtime.server.schemas", reason="the HTTP layer (pydantic) is not importable")
    import annotated_types as at

    from thinkling.runtime.api.limits import COMPLETION_LIMITS, LIMITS
    from thinkling.runtime.server.schemas import ChatCompletionRequest, CompletionRequest

    for model, table in ((ChatCompletionRequest, LIMITS), (CompletionRequest, COMPLETION_LIMITS)):
        for name, lim in table.items():
            if name not in model.model_fields:
                continue
            meta = {type(m): m for m in model.model_fields[name].metadata}
            low = meta.get(at.Gt if lim.low_open else at.Ge)
            assert (low.gt if lim.low_open else low.ge) == lim.low, name
            assert (meta[at.Le].le if at.Le in meta else None) == lim.high, name


# --- the bridge ---------------------------------------------------------------------

def _bridge_error(err: dict) -> Outcome:
    return Outcome(code=err["code"], param=err.get("param"))


def _bridge_result(r: dict) -> Outcome:
    return Outcome(text=r["text"], reasoning=r["reasoning"], finish_reason=r["finish_reason"],
                   decision=r["decision"], completion_tokens=r["timings"]["completion_tokens"])


def bridge_complete(body) -> Outcome:
    arg = body if isinstance(body, bytes) else _raw(body).decode("utf-8", "surrogatepass")
    reply = json.loads(mb.complete(arg))
    return _bridge_error(reply["error"]) if "error" in reply else _bridge_result(reply)


def bridge_stream(body) -> Outcome:
    arg = body if isinstance(body, bytes) else _raw(body).decode("utf-8", "surrogatepass")
    reply = json.loads(mb.generate(arg))
    if "error" in reply:
        return _bridge_error(reply["error"])
    events, end = [], time.monotonic() + 180
    while not any(e["type"] in TERMINAL for e in events):
        assert time.monotonic() < end, events
        events += json.loads(mb.poll(reply["request_id"], 1000))["events"]
    last = events[-1]
    if last["type"] == "error":
        return Outcome(code=last["code"])
    assert last["type"] == "done", last
    out = _bridge_result(last)
    assert out.text == "".join(e["text"] for e in events if e["type"] == "answer")
    assert out.reasoning == "".join(e["text"] for e in events if e["type"] == "reasoning")
    return out


# --- HTTP ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Http:
    url: str
    proc: subprocess.Popen
    log: Path
    seen: list = field(default_factory=list)

    def post(self, body, stream: bool = False):
        import httpx

        data = _raw(_with(body, stream=True, stream_options={"include_usage": True}) if stream else body)
        return httpx.post(self.url + "/v1/chat/completions", content=data, timeout=180,
                          headers={"Content-Type": "application/json"})

    @staticmethod
    def error(r) -> Outcome:
        err = r.json()["error"]
        key = (r.status_code, err["code"])
        assert key in HTTP_TO_BRIDGE, f"unmapped HTTP error {key}: {err}"
        return Outcome(code=HTTP_TO_BRIDGE[key], param=err.get("param"))

    def complete(self, body) -> Outcome:
        r = self.post(body)
        if r.status_code != 200:
            return self.error(r)
        data = r.json()
        choice = data["choices"][0]
        return Outcome(text=choice["message"]["content"], reasoning=choice["message"].get("reasoning_content") or "",
                       finish_reason=choice["native_finish_reason"], decision=data.get("decision"),
                       completion_tokens=data["usage"]["completion_tokens"])

    def stream(self, body) -> Outcome:
        r = self.post(body, stream=True)
        if r.status_code != 200:
            return self.error(r)
        out = Outcome()
        lines = [ln[len("data: "):] for ln in r.text.splitlines() if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]", lines[-3:]
        for payload in map(json.loads, lines[:-1]):
            if "error" in payload:
                return self.error_payload(payload)
            if payload.get("usage"):
                out.completion_tokens = payload["usage"]["completion_tokens"]
            for choice in payload["choices"]:
                out.text += choice["delta"].get("content") or ""
                out.reasoning += choice["delta"].get("reasoning_content") or ""
                if choice.get("native_finish_reason"):
                    out.finish_reason, out.decision = choice["native_finish_reason"], payload.get("decision")
        return out

    @staticmethod
    def error_payload(payload) -> Outcome:
        code = payload["error"]["code"]
        return Outcome(code={"context_length_exceeded": "context_length_exceeded"}.get(code, "internal"))


@pytest.fixture(scope="module")
def http(tmp_path_factory):
    pytest.importorskip("thinkling.runtime.server.app", reason="the HTTP server (runtime/server) is not importable")
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("contract") / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKLING_") or k == "THINKLING_HOME"}
    cmd = [sys.executable, "-m", "thinkling.runtime.cli", "serve", "--port", str(port), "--ctx", str(LOAD["n_ctx"]),
           "--threads", str(LOAD["threads"]), "--queue-size", str(LOAD["queue_size"])]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    srv = Http(f"http://127.0.0.1:{port}", proc, log)
    end = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(srv.url + "/health", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < end, "the server did not become healthy"
        time.sleep(0.1)
    yield srv
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def bridge():
    reply = json.loads(mb.load_model(json.dumps(LOAD)))
    assert "error" not in reply, reply
    mb.set_callback(None)
    return mb


def _expect(case: Case, name: str, o: Outcome) -> None:
    where = f"{case.name} via {name}"
    assert o.code == case.code, f"{where}: expected {case.code}, got {o}"
    if case.code == "invalid_request" or (case.code and case.param):
        assert o.param == case.param, f"{where}: param {o.param!r} != {case.param!r}"
    if o.ok:
        assert o.finish_reason in ("stop", "length", "deadline"), f"{where}: {o}"
        assert case.check is None or case.check(o), f"{where}: check failed on {o}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_contract(case, bridge, http):
    outcomes = {"bridge.complete": bridge_complete(case.body), "bridge.generate": bridge_stream(case.body),
                "http": http.complete(case.body), "http.stream": http.stream(case.body)}
    for name, o in outcomes.items():
        _expect(case, name, o)
    if case.code is None:
        first = outcomes["bridge.complete"]
        for name, o in outcomes.items():
            if not case.same_text:  # timing-dependent cases: only the expectations above
                continue
            assert (o.text, o.reasoning, o.finish_reason) == (first.text, first.reasoning, first.finish_reason), \
                f"{case.name}: {name} {o} != bridge.complete {first}"
            assert (o.decision or {}).get("mode") == (first.decision or {}).get("mode"), f"{case.name}: {name}"


# --- busy past the queue, on both ------------------------------------------------------

LONG = chat("Write a very long story about a dragon.", max_tokens=48, temperature=0.8, seed=1)


def test_busy_on_both_transports(bridge, http):
    import httpx

    # bridge: one running, two queued (queue_size 2), the next is busy
    running = json.loads(mb.generate(json.dumps(LONG)))["request_id"]
    while not json.loads(mb.poll(running, 500))["events"]:
        pass
    queued = [json.loads(mb.generate(json.dumps(chat(max_tokens=1))))["request_id"] for _ in range(2)]
    assert json.loads(mb.generate(json.dumps(chat())))["error"]["code"] == "busy"
    for rid in [*queued, running]:
        mb.cancel(rid)

    # HTTP: the same shape of load through the real server
    with httpx.stream("POST", http.url + "/v1/chat/completions", timeout=180,
                      content=json.dumps({**LONG, "stream": True}), headers={"Content-Type": "application/json"}) as s:
        lines = s.iter_lines()
        next(ln for ln in lines if ln.startswith("data: "))  # the long request is running
        waiters = [threading.Thread(target=http.post, args=(chat(max_tokens=1),)) for _ in range(2)]
        for t in waiters:
            t.start()
        end = time.monotonic() + 60
        while httpx.get(http.url + "/health", timeout=5).json()["queue_depth"] < 3:
            assert time.monotonic() < end, "the two requests never queued"
            time.sleep(0.02)
        assert http.error(http.post(chat())).code == "busy"
    for t in waiters:  # leaving the stream disconnected the long request; the queue drains
        t.join(180)
