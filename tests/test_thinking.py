"""The adaptive-thinking controller's logic on a scripted backend (exact,
token by token); real-model behaviour is in test_student.py."""

import math
from pathlib import Path

import pytest

from thinkling.runtime.generate import join_stream
from thinkling.runtime.models import ModelRef
from thinkling.runtime.thinking import ThinkingController, ThinkingProfile
from thinkling.runtime.thinking.profile import Speed
from thinkling.runtime.types import GenerationRequest, Message, SamplingParams
from scripted_backend import ScriptedBackend

REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "thinkling-arith"})
# p(direct correct) rises with probe confidence: confident probes (mean logprob ~0) pass.
PROFILE = ThinkingProfile(weights={"bias": 2.0, "probe_mean_logprob": 3.0}, threshold=0.5, probe_max_tokens=8)


def run(controller, question="12 + 30", **kw):
    kw.setdefault("max_tokens", 64)
    req = GenerationRequest(messages=[Message("user", question)], sampling=SamplingParams(temperature=0), **kw)
    chunks = list(controller.stream(req, should_stop=lambda: None))
    return chunks, join_stream(iter(chunks), "scripted")


@pytest.fixture
def ctl():
    return ThinkingController(ScriptedBackend(), REF, profile=PROFILE)


def test_off_and_on_formats(ctl):
    _, off = run(ctl, think="off")
    assert (off.text, off.reasoning, off.decision.mode) == ("42", "", "off")
    _, on = run(ctl, think="on", max_tokens=30)
    assert on.decision.mode == "on" and on.reasoning.startswith("abcdefghij")


def test_budget_forcing_ends_reasoning_exactly_and_still_answers(ctl):
    for budget in (0, 1, 5, 13):
        _, r = run(ctl, think="on", reasoning_budget=budget)
        assert len(r.reasoning) == budget, (budget, r.reasoning)  # one character per token here
        assert r.text == "42" and r.finish_reason == "stop"
        assert r.decision.budget == budget


def test_post_streams_the_answer_before_any_rationale_token(ctl):
    chunks, r = run(ctl, think="post")
    first_reasoning = next(i for i, c in enumerate(chunks) if c.reasoning)
    answer_done = max(i for i, c in enumerate(chunks) if c.text)
    assert answer_done < first_reasoning
    assert (r.text, r.reasoning) == ("42", "xyzxyz")


@pytest.mark.parametrize("budget,rationale", [(0, ""), (2, "xy")])
def test_post_rationale_can_be_skipped_or_cut(ctl, budget, rationale):
    _, r = run(ctl, think="post", reasoning_budget=budget)
    assert (r.text, r.reasoning) == ("42", rationale)


def test_auto_confident_probe_answer_is_returned_without_reasoning(ctl):
    backend = ctl.backend
    _, r = run(ctl, think="auto")
    d = r.decision.to_dict()  # the wire shape
    assert d["mode"] == "off" and d["score"] >= d["threshold"] and "confident" in d["reason"]
    assert (r.text, r.reasoning) == ("42", "")
    assert "<|direct|>" in "".join(backend.token_bytes(t).decode() for t in backend.kv_tokens)


# With room for 64 probe tokens the mean log-prob's bound stays loose, so the probe runs to its end.
LONG_PROBE = ThinkingProfile(weights=PROFILE.weights, threshold=0.5, probe_max_tokens=64)


def test_auto_unsure_probe_reasons():
    ctl = ThinkingController(ScriptedBackend(), REF, profile=LONG_PROBE)
    _, r = run(ctl, "hard 12 + 30", think="auto", reasoning_budget=3)
    d = r.decision.to_dict()  # the wire shape
    assert d["mode"] == "on" and d["score"] < d["threshold"] and "unsure" in d["reason"]
    assert r.reasoning == "abc" and r.text == "42"
    assert {"score", "threshold", "reason", "probe_ms", "features"} <= d.keys()
    assert d["features"]["probe_finished"] == 1.0


def test_auto_stops_a_probe_that_can_no_longer_be_confident(ctl):
    # hard probes score about -3.6 per token: with 8 probe tokens at most, after two tokens the
    # mean log-prob can reach no more than -0.9, and p <= sigmoid(2 - 2.7) < 0.5 whatever follows
    full = ThinkingController(ScriptedBackend(), REF, profile=LONG_PROBE)
    _, stopped = run(ctl, "hard 12 + 30", think="auto", reasoning_budget=3)
    _, whole = run(full, "hard 12 + 30", think="auto", reasoning_budget=3)
    d = stopped.decision.to_dict()
    assert d["mode"] == whole.decision.mode == "on" and "probe stopped after 2 tokens" in d["reason"]
    assert d["features"]["probe_tokens"] == 2.0 and d["features"]["probe_finished"] == 0.0
    assert (stopped.reasoning, stopped.text) == (whole.reasoning, whole.text) == ("abc", "42")
    assert ctl.backend.evals == full.backend.evals - 1  # the probe's last pass was never run
    # a confident probe is never stopped
    _, easy = run(ctl, "12 + 30", think="auto")
    assert easy.decision.mode == "off" and "confident" in easy.decision.reason


def test_best_reachable_bounds_every_finished_probe():
    import random

    from thinkling.runtime.thinking.profile import FEATURES, probe_features, query_features

    rng = random.Random(0)
    for _ in range(3000):
        weights = {f: rng.uniform(-3, 3) for f in FEATURES if rng.random() < 0.7}
        prof = ThinkingProfile(weights=weights, threshold=0.5, probe_max_tokens=rng.randint(1, 8))
        q = query_features(rng.choice(["1 + 2", "What is 37 + 4 * 12 - 9?", "hi"]))
        n = rng.randint(1, prof.probe_max_tokens)
        lps = [-rng.expovariate(1.0) * rng.choice([0.01, 1, 5]) for _ in range(n)]
        ents = [rng.uniform(0, 6) for _ in range(n)]
        final = prof.score({**q, **probe_features(lps, ents, rng.random() < 0.5)})
        for k in range(1, n + 1):
            assert prof.best_reachable(q, lps[:k], ents[:k], prof.probe_max_tokens) >= final - 1e-12
    # the bound is not vacuous where the weights allow one
    assert PROFILE.best_reachable({}, [-3.6, -3.6], [3.0, 3.0], 8) < 0.5


# The gate: each operator lowers p(direct right); three operators fall under skip_below.
GATED = ThinkingProfile(weights=PROFILE.weights, threshold=0.5, probe_max_tokens=8,
                        gate_weights={"bias": 3.0, "q_operators": -2.0}, skip_below=0.5)


def evaluated_text(backend, calls):
    return "".join(backend.token_bytes(t).decode() for toks in calls for t in toks)


@pytest.fixture
def gated():
    ctl = ThinkingController(ScriptedBackend(), REF, profile=GATED)
    calls = []
    real_eval = ctl.backend.eval
    ctl.backend.eval = lambda toks: (calls.append(list(toks)), real_eval(toks))[1]
    return ctl, calls


def test_auto_gate_sends_a_plainly_hard_question_to_reasoning_without_a_probe(gated):
    ctl, calls = gated
    _, r = run(ctl, "1 + 2 * 3 - 4", think="auto", reasoning_budget=3)
    d = r.decision.to_dict()  # the wire shape
    assert (d["stage"], d["mode"]) == ("gate", "on") and "without a probe" in d["reason"]
    assert d["score"] == d["gate_score"] < d["threshold"] == d["skip_below"] == 0.5
    assert "probe_ms" not in d and d["features"]["q_operators"] == 3.0
    assert "<|direct|>" not in evaluated_text(ctl.backend, calls)  # no probe was run
    assert r.reasoning == "abc" and r.text == "42"


def test_auto_gate_above_skip_level_probes(gated):
    ctl, calls = gated
    _, r = run(ctl, "12 + 30", think="auto")
    d = r.decision.to_dict()  # the wire shape
    assert (d["stage"], d["mode"]) == ("probe", "off") and d["gate_score"] >= d["skip_below"]
    assert "<|direct|>" in evaluated_text(ctl.backend, calls) and r.text == "42"
    # a profile without a gate probes every query
    plain = ThinkingController(ScriptedBackend(), REF, profile=PROFILE)
    _, r = run(plain, "1 + 2 * 3 - 4", think="auto")
    assert r.decision.stage == "probe" and r.decision.gate_score is None


def test_auto_without_profile_uses_family_default():
    ctl = ThinkingController(ScriptedBackend(), REF, profile=None)
    _, r = run(ctl, think="auto", max_tokens=10)
    assert r.decision.mode == "on" and "no calibrated profile" in r.decision.reason


def test_decision_threshold_is_what_decides():
    strict = ThinkingProfile(weights=PROFILE.weights, threshold=0.999, probe_max_tokens=8)
    ctl = ThinkingController(ScriptedBackend(), REF, profile=strict)
    _, r = run(ctl, think="auto", reasoning_budget=2)
    assert r.decision.mode == "on"


def test_deadline_becomes_a_budget_from_measured_speed():
    prof = ThinkingProfile(weights=PROFILE.weights, speed=Speed(prefill_tok_s=1e6, decode_tok_s=100.0, samples=5),
                           mean_answer_tokens=2)
    ctl = ThinkingController(ScriptedBackend(), REF, profile=prof)
    ctl.speed = Speed(prefill_tok_s=1e6, decode_tok_s=100.0, samples=5)  # 10 ms per token, scripted
    _, r = run(ctl, think="on", deadline_s=0.5)
    assert 0 < r.decision.budget <= int(0.8 * 0.5 * 100)
    assert len(r.reasoning) == r.decision.budget and r.text == "42"


def test_tight_deadline_answers_directly():
    ctl = ThinkingController(ScriptedBackend(), REF, profile=PROFILE)
    ctl.speed = Speed(prefill_tok_s=1e6, decode_tok_s=10.0, samples=5)  # 100 ms per token
    _, r = run(ctl, think="on", deadline_s=0.25)
    assert r.decision.mode == "off" and "deadline" in r.decision.reason and r.text == "42"


def test_profile_score_is_logistic():
    p = ThinkingProfile(weights={"bias": 0.0, "probe_min_logprob": 1.0})
    assert p.score({"probe_min_logprob": 0.0}) == pytest.approx(0.5)
    assert p.score({"probe_min_logprob": -5.0}) < 0.01 < 0.99 < p.score({"probe_min_logprob": 5.0})
    assert ThinkingProfile.from_dict({**vars(p), "speed": {"decode_tok_s": 3.0}, "junk": 1}).speed.decode_tok_s == 3.0
    assert p.gate_score({}) is None and not p.skips_probe(None)
    assert GATED.gate_score({"q_operators": 1.0}) == pytest.approx(1 / (1 + math.exp(-1.0)))
    assert GATED.skips_probe(0.49) and not GATED.skips_probe(0.5)
    # a profile written before the gate existed still loads, and probes every query
    old = ThinkingProfile.from_dict({"weights": {"bias": 1.0}, "threshold": 0.3})
    assert (old.gate_weights, old.skip_below) == ({}, 0.0)


def test_decision_wire_shape_keeps_its_keys_and_order():
    """The decision ships in HTTP and bridge responses: which keys appear, and in what
    order, is the shape the dicts it replaced had (tests/test_contract.py pins the rest)."""
    from thinkling.runtime.types import Decision

    gate = Decision(mode="on", requested="auto", reason="r", family="f", gate_score=0.1, skip_below=0.5,
                    stage="gate", score=0.1, threshold=0.5, features={"q": 1.0}, planned=True)
    probe = Decision(mode="off", requested="auto", reason="r", family="f", stage="probe", score=0.9,
                     threshold=0.5, probe_ms=3.0, features={"p": 1.0})
    chosen = Decision(mode="on", requested="on", reason="requested", family="f", deadline_budget=7, planned=True,
                      budget=7, response_format="json_object", constrained="after_reasoning")
    raw = Decision(mode="raw", requested="auto", reason="raw completion prompt")
    assert list(gate.to_dict()) == ["requested", "family", "gate_score", "skip_below", "stage", "signal", "cost_ms",
                                    "mode", "score", "threshold", "features", "reason", "budget"]
    assert list(probe.to_dict()) == ["requested", "family", "stage", "signal", "cost_ms", "score", "threshold",
                                     "probe_ms", "features", "mode", "reason"]  # the probe's own answer: no plan
    assert list(chosen.to_dict()) == ["requested", "family", "mode", "reason", "deadline_budget", "budget",
                                      "response_format", "constrained"]
    assert raw.to_dict() == {"mode": "raw", "requested": "auto", "reason": "raw completion prompt"}
    for d in (gate, probe, chosen, raw):
        assert Decision.from_dict(d.to_dict()) == d
