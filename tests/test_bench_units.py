"""bench pieces without a model: prompt files, profiles, ISA flags, the stream
clock, the endpoint runner over a mock transport, summaries, report and plot
on a synthetic record."""

from __future__ import annotations

import csv
import json

import httpx
import pytest

from thinkling.bench.fingerprint import isa_flags
from thinkling.bench.latency import summarize_profile
from thinkling.bench.profiles import laptop_profile, phone_profile, resolve_profiles
from thinkling.bench.prompts import PromptFileError, load_cases, parse_cases
from thinkling.bench.report import markdown_summary, render_plain, write_csv
from thinkling.bench.runners.base import Sample, StreamClock
from thinkling.bench.runners.endpoint import EndpointError, EndpointRunner


# --- prompts ------------------------------------------------------------------

def test_builtin_classes():
    cases = load_cases()
    assert [c.name for c in cases] == ["short", "medium", "long"]
    assert [c.verdict for c in cases] == [True, False, False]
    req = cases[0].request(think="off")
    assert req.sampling.temperature == 0.0 and req.messages[0].role == "user"


def test_parse_jsonl_and_json_list():
    jsonl = '{"name": "a", "text": "hi", "max_tokens": 4}\n\n{"name": "b", "prompt": "raw", "verdict": true}\n'
    a, b = parse_cases(jsonl)
    assert a.messages[0].content == "hi" and a.max_tokens == 4 and not a.verdict
    assert b.prompt == "raw" and b.verdict
    (c,) = parse_cases(json.dumps([{"name": "c", "messages": [{"role": "system", "content": "s"},
                                                               {"role": "user", "content": "u"}]}]))
    assert [m.role for m in c.messages] == ["system", "user"]


@pytest.mark.parametrize("text,fragment", [
    ('{"name": "a", "text": "x", "prompt": "y"}', "exactly one"),
    ('{"name": "a", "text": "x", "colour": 1}', "unknown keys"),
    ('{"name": "a", "text": "x"}\n{"name": "a", "text": "y"}', "unique"),
    ('{"name": "a", "text": "x", "max_tokens": 0}', "max_tokens"),
    ('{"name": "a", "messages": [{"role": "system", "content": "x"}]}', "user message"),
    ('{"name": "a", "text": "x"', "not valid JSON"),
    ("", "empty"),
])
def test_prompt_file_errors(text, fragment):
    with pytest.raises(PromptFileError, match=fragment):
        parse_cases(text)


def test_nonce_goes_in_front_of_the_last_user_message():
    (c,) = parse_cases('{"name": "a", "messages": [{"role": "user", "content": "one"}, '
                       '{"role": "assistant", "content": "two"}, {"role": "user", "content": "three"}]}')
    msgs = c.chat_messages("[n1]")
    assert [m.content for m in msgs] == ["one", "two", "[n1] three"]
    assert c.messages[2].content == "three"  # the case itself is unchanged


# --- profiles -----------------------------------------------------------------

def test_phone_profile_caps_threads_and_pins_highest_cpus():
    p = phone_profile(cores=8, cpus=list(range(8)))
    assert (p.n_threads, p.cpu_affinity, p.n_batch, p.n_ctx, p.emulated) == (4, (4, 5, 6, 7), 128, 2048, True)
    assert phone_profile(cores=2, cpus=[0, 1]).cpu_affinity == (1,)
    assert phone_profile(cores=1, cpus=[0]).n_threads == 1
    assert phone_profile(cores=32, cpus=list(range(64))).n_threads == 4
    assert any("EMULATION" in a for a in p.assumptions)
    cfg = p.engine_config()
    assert cfg.cpu_affinity == (4, 5, 6, 7) and cfg.n_threads == 4


def test_laptop_profile_and_resolve():
    p = laptop_profile(cores=6)
    assert (p.n_threads, p.cpu_affinity, p.emulated) == (6, None, False)
    assert [x.name for x in resolve_profiles("all")] == ["laptop", "phone"]
    with pytest.raises(ValueError):
        resolve_profiles("watch")


# --- fingerprint --------------------------------------------------------------

def test_isa_flags_x86_and_arm():
    x86 = "processor : 0\nflags : fpu sse sse2 ssse3 avx avx2 fma f16c avx512f avx512_vnni hypervisor amx_int8\n"
    assert isa_flags(x86) == ["amx_int8", "avx", "avx2", "avx512_vnni", "avx512f", "f16c", "fma", "ssse3"]
    arm = "processor : 0\nFeatures : fp asimd evtstrm aes asimdhp asimddp i8mm sve crc32\n"
    assert isa_flags(arm) == ["asimd", "asimddp", "asimdhp", "i8mm", "sve"]
    assert isa_flags("nothing here") == []


# --- stream clock -------------------------------------------------------------

class FakeClock:
    def __init__(self, times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0)


def test_stream_clock_definitions():
    # start 0; a hidden token at 0.1, visible tokens at 0.15, 0.2, 0.3; end at 0.5
    clock = StreamClock(short_tokens=3, now=FakeClock([0.0, 0.1, 0.15, 0.2, 0.3, 0.5]))
    clock.chunk(1, False)
    clock.chunk(1, True)
    clock.chunk(1, True)  # third token: the short answer is complete
    clock.chunk(1, True)
    clock.finish()
    s = clock.sample(runner="r", profile="p", case="c", run=0, prompt_tokens=110, cached_tokens=10)
    assert s.first_token_ms == pytest.approx(100)
    assert s.ttft_ms == pytest.approx(150)
    assert s.short_answer_ms == pytest.approx(200)
    assert s.e2e_ms == pytest.approx(500)
    assert s.completion_tokens == 4
    assert s.prefill_tok_s == pytest.approx(100 / 0.1)  # 100 evaluated tokens by the first token
    assert s.decode_tok_s == pytest.approx(3 / 0.4)


def test_stream_clock_short_answer_is_the_end_when_shorter():
    clock = StreamClock(short_tokens=16, now=FakeClock([0.0, 0.05, 0.08]))
    clock.chunk(1, True)
    clock.finish()
    s = clock.sample(runner="r", profile="p", case="c", run=0, prompt_tokens=None, cached_tokens=None)
    assert s.short_answer_ms == pytest.approx(80) and s.decode_tok_s is None and s.prefill_tok_s is None


# --- endpoint runner over a mock transport -------------------------------------

def _sse(events) -> bytes:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"


def test_endpoint_runner_parses_sse_and_skips_role_delta():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m"}]})
        seen["body"] = json.loads(request.content)
        events = [{"choices": [{"delta": {"role": "assistant", "content": ""}}]},
                  {"choices": [{"delta": {"reasoning_content": "hmm"}}]},
                  {"choices": [{"delta": {"content": "Paris"}}]},
                  {"choices": [{"delta": {"content": "."}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 3}}]
        return httpx.Response(200, content=_sse(events), headers={"content-type": "text/event-stream"})

    runner = EndpointRunner("http://phone:8080/v1", max_tokens=8, transport=httpx.MockTransport(handler))
    (case,) = parse_cases('{"name": "short", "text": "Capital of France?"}')
    s = runner.run(case, 3)
    assert s.text == "Paris." and s.finish_reason == "stop"
    assert (s.prompt_tokens, s.completion_tokens) == (20, 3)
    assert s.ttft_ms is not None and s.ttft_ms <= s.e2e_ms
    body = seen["body"]
    assert body["stream"] is True and body["temperature"] == 0.0 and body["max_tokens"] == 8
    assert body["think"] == "off" and body["stream_options"] == {"include_usage": True}
    assert body["messages"][-1]["content"].startswith("[run 3 ")  # nonce: no cached prefix
    assert runner.server_info()["models"] == [{"id": "m"}]
    runner.close()


def test_endpoint_runner_raises_on_http_error():
    runner = EndpointRunner("http://x", transport=httpx.MockTransport(lambda r: httpx.Response(503, text="busy")))
    (case,) = parse_cases('{"name": "short", "text": "hi"}')
    with pytest.raises(EndpointError, match="503"):
        runner.run(case, 0)


# --- summaries, report and plot on a synthetic record ----------------------------

def _samples(runner, cls, ttfts, decode=50.0):
    return [Sample(runner=runner, profile="laptop", prompt_class=cls, run=i, prompt_tokens=13, cached_tokens=0,
                   completion_tokens=10, ttft_ms=t, first_token_ms=t, short_answer_ms=t + 100, e2e_ms=t + 200,
                   prefill_tok_s=13 / (t / 1000), decode_tok_s=decode, finish_reason="stop", text="Paris")
            for i, t in enumerate(ttfts)]


def _record(tmp_path):
    cases = parse_cases('{"name": "short", "text": "q", "verdict": true}\n{"name": "long", "text": "q"}')
    samples = (_samples("thinkling", "short", [50, 60, 70, 80]) + _samples("llama-cpp-python", "short", [40, 50, 60, 70], 60.0)
               + _samples("thinkling", "long", [900, 1000, 1100, 1200]))
    prof = summarize_profile({"name": "laptop", "runner": "thinkling", "settings": laptop_profile(2).to_dict(),
                              "load_average": {"start": [0.1, 0.2, 0.3], "end": [0.2, 0.2, 0.3]},
                              "load_ms": 500.0, "peak_rss_bytes": 400 * 2**20, "emulated": False,
                              "assumptions": ["x"]},
                             samples, cases, 200.0)
    return {"config": {"target_ms": 200.0, "runs": 4, "warmup": 1, "model": None},
            "load_average": {"start": [0.1, 0.2, 0.3], "end": [0.2, 0.2, 0.3]},
            "fingerprint": {"machine": {"cpu": "cpu", "physical_cores": 2}, "model": {"name": "m"}},
            "profiles": [prof], "samples": [s.to_dict() for s in samples]}


def test_summary_verdict_and_overhead(tmp_path):
    prof = _record(tmp_path)["profiles"][0]
    # verdict on the short class only: TTFT p95 78.5, short answer p95 178.5 -> pass
    assert prof["verdict"]["pass"] is True and prof["verdict"]["classes"] == ["short"]
    short, long_ = prof["classes"]
    assert [c["pass"] for c in long_["checks"]] == [False, False]  # reported, not judged
    o = short["overhead"]
    assert o["ttft_ratio"] == pytest.approx(65 / 55, abs=1e-4)
    assert o["decode_ratio"] == pytest.approx((1000 / 50) / (1000 / 60), abs=1e-4)
    assert o["same_output"] is True and o["pairs"] == 4
    assert "overhead" not in long_


def test_report_csv_markdown_and_plot(tmp_path):
    record = _record(tmp_path)
    text = render_plain(record)
    assert "verdict PASS" in text and "baseline" in text
    md = markdown_summary(record)
    assert md.count("\n| laptop") == 2 and "**PASS**" in md
    write_csv(record, tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(rows) == 12 and rows[0]["runner"] == "thinkling"
    pytest.importorskip("matplotlib")
    from thinkling.bench.plot import plot_latency

    plot_latency(record, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- CLI edges: errors become one line and an exit code, before any model loads ---

@pytest.mark.parametrize("argv,code,fragment", [
    (["latency", "--runs", "0"], 2, "runs must be at least 1"),
    (["latency", "--prompts", "/nonexistent/p.jsonl"], 2, "cannot read prompts file"),
    (["latency", "--endpoint", "http://x", "--baseline"], 2, "cannot be combined"),
])
def test_cli_errors(argv, code, fragment, capsys):
    from thinkling.bench.cli import main

    assert main(argv) == code
    assert fragment in capsys.readouterr().err


def test_cli_registers_latency_and_leaves_room_for_others():
    from thinkling.bench.cli import SUBCOMMANDS, build_parser

    assert "thinkling.bench.latency_cli" in SUBCOMMANDS
    args = build_parser().parse_args(["latency", "--profile", "phone", "--target-ms", "150"])
    assert (args.profile, args.target_ms, args.runs, args.warmup) == ("phone", 150.0, 20, 2)


# --- built-in sets and classes that do not fit the context ---------------------

def test_builtin_arith_set_by_name():
    from thinkling.bench.prompts import builtin_sets

    assert {"default", "arith"} <= set(builtin_sets())
    cases = load_cases("arith")
    assert [c.name for c in cases] == ["short", "medium", "long"] and cases[0].verdict


def test_a_class_that_does_not_fit_is_skipped_not_fatal():
    from thinkling.bench.latency import _timed, _warm
    from thinkling.runtime.errors import ContextLengthExceeded

    class Runner:
        name = "thinkling"

        def __init__(self):
            self.calls = []

        def run(self, case, i):
            self.calls.append((case.name, i))
            if case.name == "long":
                raise ContextLengthExceeded(900, 256)
            return _samples("thinkling", case.name, [10.0])[0]

    cases = parse_cases('{"name": "short", "text": "q", "verdict": true}\n{"name": "long", "text": "q"}')
    runner, skipped = Runner(), {}
    _warm(runner, cases, 2, skipped)
    samples = _timed([runner], cases, 3, lambda _m: None, [], skipped)
    assert skipped == {"long": "prompt has 900 tokens but the context holds 256"}
    assert [c for c in runner.calls if c[0] == "long"] == [("long", -1)]  # tried once, then skipped
    assert len(samples) == 3
    prof = summarize_profile({"name": "laptop", "runner": "thinkling", "skipped": skipped}, samples, cases, 200.0)
    assert prof["classes"][1]["skipped"] and prof["classes"][1]["checks"] == []
    assert prof["verdict"]["pass"] is True and prof["verdict"]["classes"] == ["short"]
    # a verdict class that was skipped leaves no evidence: fail
    prof = summarize_profile({"name": "laptop", "runner": "thinkling", "skipped": {"short": "too long"}},
                             [], cases, 200.0)
    assert prof["verdict"]["pass"] is False


def test_memory_wall_numbers(tmp_path, default_model_path):
    from thinkling.bench.bandwidth import decode_share, read_bandwidth_gb_s, weights_bytes_per_token
    from thinkling.runtime.ggufheader import read_header

    size = default_model_path.stat().st_size
    per_token = weights_bytes_per_token(default_model_path)
    assert per_token == sum(t.n_bytes for t in read_header(default_model_path).tensors)
    assert 0.9 * size < per_token < size  # the tensors are nearly the whole file
    assert weights_bytes_per_token(tmp_path / "missing.onnx") is None
    bw = read_bandwidth_gb_s(threads=1, mib_per_thread=64, repeats=1)
    assert 0.1 < bw < 1000
    assert decode_share(40.0, 250_000_000, 10.0) == {"read_gb_s": 10.0, "share": 1.0}
    assert decode_share(None, 1, 1.0) == {"read_gb_s": None, "share": None}


def test_report_prints_the_memory_wall(tmp_path):
    record = _record(tmp_path)
    prof = record["profiles"][0]
    prof["memory"] = {"weights_bytes_per_token": 250_000_000, "read_bandwidth_gb_s": 10.0, "threads": 2}
    prof["classes"][0]["memory"] = {"read_gb_s": 9.0, "share": 0.9}
    assert "250 MB of weights read per token; read bandwidth 10.0 GB/s (2 thread(s)); decode reads short 9.0 GB/s (90%)" \
        in render_plain(record)


def test_endpoint_engine_rebuilds_chunks_decision_and_tokens():
    """bench modes --url reads text, reasoning, the decision and the token count from SSE."""
    from thinkling.bench.modes import run_query
    from thinkling.bench.runners.endpoint import EndpointEngine

    events = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {"choices": [{"index": 0, "delta": {"reasoning_content": "4 * 12 = 48"}}]},
        {"choices": [{"index": 0, "delta": {"content": "85"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
         "timings": {"ttft_ms": 12.5, "predicted_n": 9}, "decision": {"mode": "on", "stage": "gate"}},
        {"choices": [], "usage": {"completion_tokens": 9}},
    ]
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content))
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    eng = EndpointEngine("http://test/v1", "m", transport=httpx.MockTransport(handler))
    out = run_query(eng, {"question": "37 + 48", "answer": "85"}, "auto", 64)
    assert seen["think"] == "auto" and seen["model"] == "m" and seen["temperature"] == 0.0
    assert out.correct and out.answer == "85" and out.reasoning_chars == len("4 * 12 = 48")
    assert out.tokens == 9 and out.ttft_ms == 12.5 and out.thought and out.decision["stage"] == "gate"


def test_endpoint_engine_error_status_is_an_endpoint_error():
    from thinkling.bench.runners.endpoint import EndpointEngine

    eng = EndpointEngine("http://test", transport=httpx.MockTransport(lambda r: httpx.Response(400, text="bad")))
    from thinkling.runtime import GenerationRequest, Message
    with pytest.raises(EndpointError, match="400"):
        list(eng.stream(GenerationRequest(messages=[Message("user", "x")])))


def test_take_is_stratified_by_depth():
    from thinkling.bench.modes import take

    rows = [{"q": i, "n_ops": 1 + i // 10} for i in range(40)]
    picked = take(rows, 8)
    assert [r["n_ops"] for r in picked] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert take(rows, None) == rows and take([{"q": 1}, {"q": 2}], 1) == [{"q": 1}]
