"""``bench soak``: the traffic mix and the verdict's pure parts, then a 60-second soak
of the real server on the embedded default (the CI soak: about 80 s in all)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from thinkling.bench.soak import Result
from thinkling.bench.soak_report import agreement, contention_check, rss_check
from thinkling.bench.soak_traffic import Mix, draw, fixed_corpus, mutated

REPO = Path(__file__).resolve().parent.parent


def _kinds(seed: int, dialect: str = "thinkling", n: int = 400) -> list[tuple[str, bytes]]:
    rng, mix = random.Random(seed), Mix(dialect=dialect)
    corpus = fixed_corpus(dialect)
    return [(s.kind, s.body) for s in (draw(rng, mix, corpus) for _ in range(n))]


def test_the_mix_is_seeded_and_covers_every_kind():
    assert _kinds(1) == _kinds(1) and _kinds(1) != _kinds(2)
    assert {k for k, _ in _kinds(1)} == {"chat", "chat_stream", "completion", "completion_stream", "deadline",
                                          "disconnect", "cancel", "burst", "hostile"}


def test_the_openai_dialect_sends_no_thinkling_fields():
    for kind, body in _kinds(3, "openai", 1000):
        if kind == "hostile" or not body:
            continue
        fields = set(json.loads(body))
        assert not fields & {"think", "reasoning_budget", "deadline_ms", "speculative"}, (kind, fields)


def test_mutations_keep_generations_short():
    rng, mix = random.Random(0), Mix()
    for _ in range(500):
        shot = mutated(rng, mix)
        try:
            body = json.loads(shot.body)
        except ValueError:
            continue
        if isinstance(body, dict) and isinstance(body.get("max_tokens"), int):
            assert body["max_tokens"] <= mix.max_tokens


def _r(kind="chat", phase="free", ms=100.0, outcome="200", path="/v1/chat/completions") -> Result:
    return Result(kind, path, phase, 0.0, ms, outcome, status=int(outcome) if outcome.isdigit() else None)


def test_rss_check_passes_flat_memory_and_fails_growth():
    flat = [{"t": t, "rss_mb": 500 + (t % 3), "fds": 20} for t in range(0, 600, 2)]
    growing = [{"t": t, "rss_mb": 500 + t / 4, "fds": 20} for t in range(0, 600, 2)]
    assert rss_check(flat, 60, 64)["pass"]
    verdict = rss_check(growing, 60, 64)
    assert not verdict["pass"] and verdict["growth_mb"] > 64
    assert not rss_check(flat[:3], 60, 64)["pass"]  # no evidence is a fail


def test_contention_check_compares_each_kind_with_its_own_p95():
    free = [_r(ms=100.0 + i) for i in range(20)] + [_r("completion", ms=10.0) for _ in range(20)]
    assert contention_check(free + [_r(phase="busy", ms=1000.0), _r("completion", "busy", 90.0)])["pass"]
    slow = contention_check(free + [_r("completion", "busy", 200.0)])  # 20x the completion p95
    assert not slow["pass"] and slow["n_too_slow"] == 1
    assert not contention_check(free + [_r(phase="busy", outcome="timeout")])["pass"]


def test_agreement_matches_statuses_and_totals():
    results = [_r(), _r(outcome="429"), _r(outcome="cancel"), _r(outcome="400", path="/v1/completions")]
    before = {("/v1/chat/completions", "200"): 5.0}
    after = {("/v1/chat/completions", "200"): 6.0, ("/v1/chat/completions", "499"): 1.0,
             ("/v1/chat/completions", "429"): 1.0, ("/v1/completions", "400"): 1.0}
    assert agreement(results, before, after)["agree"]
    after[("/v1/chat/completions", "429")] = 2.0  # the server counted a 429 nobody saw
    assert not agreement(results, before, after)["agree"]


def test_a_60_second_soak_of_the_real_server(tmp_path):
    """The CI soak: `bench soak --duration 60` on the embedded default must pass."""
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    cmd = [sys.executable, "-m", "thinkling.bench.cli", "soak", "--duration", "60", "--clients", "3", "--seed", "7",
           "--server-arg=--threads=2", "--server-log", str(tmp_path / "server.log"), "--json", str(out),
           "--png", str(png)]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    record = json.loads(out.read_text())
    assert record["pass"] and record["checks"]["no_5xx"] and record["health_end"]["ok"]
    outcomes = record["phases"]["free"]["outcomes"]  # how many depends on the machine: only "some"
    assert outcomes.get("200", 0) > 0 and record["n_failures"] == 0, outcomes
    assert record["agreement"]["available"] and record["agreement"]["agree"], record["agreement"]
    assert png.stat().st_size > 10_000
    assert "Traceback" not in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("url", ["http://10.0.0.1:8080", "http://example.com"])
def test_soak_refuses_a_server_that_is_not_on_loopback(url):
    run = subprocess.run([sys.executable, "-m", "thinkling.bench.cli", "soak", "--url", url, "--duration", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "loopback" in run.stderr and "Traceback" not in run.stderr


def test_the_hostile_corpus_gets_4xx_and_leaves_the_server_healthy(tmp_path):
    """Every body of the fixed corpus, once, against the real server: a 4xx each, never a 5xx."""
    import httpx

    from thinkling.bench.soak import send
    from tests.test_server import start_server, stop_server

    srv = start_server(tmp_path / "server.log", "--model", "arith-student", "--max-body-bytes", "65536")
    try:
        with httpx.Client() as client:
            results = [send(client, srv.url, shot, "free", 0.0, 120) for shot in fixed_corpus("thinkling")]
        bad = [(r.outcome, r.shot.describe(80)) for r in results if not (r.status and 400 <= r.status < 500)]
        assert not bad, bad
        assert httpx.get(srv.url + "/health").status_code == 200
    finally:
        assert stop_server(srv) == 0
    assert "Traceback" not in srv.log.read_text()
