"""``auto`` on the model's hidden state: the gate after the prefill, profiles that store
their features and projection, calibrate's choice among signal sets, and the real
llama.cpp read of the last prompt token's state."""

import json
from pathlib import Path

import numpy as np
import pytest

from thinkling.bench import signals
from thinkling.bench.calibrate import CalibrateOptions, Sample, fit_cascade
from thinkling.runtime.generate import join_stream
from thinkling.runtime.models import ModelRef
from thinkling.runtime.thinking import Projection, ThinkingController, ThinkingProfile
from thinkling.runtime.types import GenerationRequest, Message, SamplingParams
from scripted_backend import ScriptedBackend

REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "template-mode"})
# The scripted state is [hard?, 'w' count, length/100, 1]; the identity projection (mean 0)
# makes hidden_pc0 the "hard" flag, so the gate says: reason on hard questions.
IDENTITY = Projection(mean=[0.0] * 4, components=np.eye(4).tolist())
HIDDEN_GATE = ThinkingProfile(weights={"bias": 2.0, "probe_mean_logprob": 3.0, "hidden_pc0": -1.0}, threshold=0.5,
                              gate_weights={"bias": 2.0, "hidden_pc0": -6.0}, skip_below=0.5, probe_max_tokens=8,
                              projection=IDENTITY)


def run(ctl, question, **kw):
    req = GenerationRequest(messages=[Message("user", question)], sampling=SamplingParams(temperature=0),
                            max_tokens=32, **kw)
    return join_stream(ctl.stream(req, should_stop=lambda: None), "scripted")


def counting(profile):
    ctl = ThinkingController(ScriptedBackend(), REF, profile=profile)
    calls = []
    real = ctl.backend.eval
    ctl.backend.eval = lambda toks: (calls.append(list(toks)), real(toks))[1]
    return ctl, calls


def test_hidden_gate_reasons_after_the_prefill_alone():
    ctl, calls = counting(HIDDEN_GATE)
    r = run(ctl, "what is hard", think="auto", reasoning_budget=3)
    d = r.decision.to_dict()
    assert (d["stage"], d["signal"], d["mode"]) == ("gate", "hidden", "on"), d
    assert d["score"] < d["skip_below"] and d["cost_ms"] >= 0 and "hidden state" in d["reason"]
    assert d["features"]["hidden_pc0"] == 1.0
    # the probe's prompt was prefilled once, with the state read; no decode pass followed it
    direct = [i for i, c in enumerate(calls) if ctl.backend.tokenize("<|direct|>", add_special=False)[0] in c]
    assert len(direct) == 1 and ctl.backend.hidden_calls == [len(calls[direct[0]])]
    assert r.reasoning == "abc" and r.text == "42"


def test_hidden_gate_lets_an_easy_question_through_to_the_probe():
    ctl, _ = counting(HIDDEN_GATE)
    r = run(ctl, "12 + 30", think="auto")
    d = r.decision.to_dict()
    assert (d["stage"], d["mode"], d["signal"]) == ("probe", "off", "hidden+probe"), d
    assert d["gate_score"] >= d["skip_below"] and d["features"]["hidden_pc0"] == 0.0 and r.text == "42"


def test_profile_with_hidden_state_round_trips_and_decides_the_same(tmp_path):
    path = tmp_path / "m.gguf.thinking.json"
    path.write_text(HIDDEN_GATE.to_json())
    raw = json.loads(path.read_text())
    assert "hidden_pc0" in raw["features"] and raw["projection"]["components"][0] == [1.0, 0.0, 0.0, 0.0]
    loaded = ThinkingProfile.load(path)
    assert loaded.uses_hidden and loaded.gate_uses_hidden and loaded.features == HIDDEN_GATE.features
    for q in ("what is hard", "12 + 30"):
        a = run(ThinkingController(ScriptedBackend(), REF, profile=loaded), q, think="auto").decision
        b = run(ThinkingController(ScriptedBackend(), REF, profile=HIDDEN_GATE), q, think="auto").decision
        assert (a.stage, a.mode, a.score) == (b.stage, b.mode, b.score)


def test_a_profile_written_before_signals_loads_and_decides_as_before(tmp_path):
    old = {"weights": {"bias": 2.0, "probe_mean_logprob": 3.0}, "threshold": 0.5,
           "gate_weights": {"bias": 1.0, "q_operators": -2.0}, "skip_below": 0.5, "probe_max_tokens": 8,
           "mean_reasoning_tokens": 30.0, "mean_answer_tokens": 4.0,
           "speed": {"prefill_tok_s": 0.0, "decode_tok_s": 0.0, "samples": 0}, "fitted_on": "old", "curve": [],
           "gate_curve": []}
    (tmp_path / "p.json").write_text(json.dumps(old))
    prof = ThinkingProfile.load(tmp_path / "p.json")
    assert prof.projection is None and not prof.uses_hidden
    assert prof.features == ["q_operators", "probe_mean_logprob"]
    ctl = ThinkingController(ScriptedBackend(), REF, profile=prof)
    hard = run(ctl, "1 + 2 * 3 - 4", think="auto", reasoning_budget=2).decision
    easy = run(ctl, "12", think="auto").decision
    assert (hard.stage, hard.mode, hard.signal, hard.cost_ms) == ("gate", "on", "text", 0.0)
    assert (easy.stage, easy.mode) == ("probe", "off")
    assert not getattr(ctl.backend, "hidden_calls", [])  # no state read for a profile without it


def _samples(n=120, seed=0):
    """Synthetic calibration: the direct answer is right exactly when hidden[0] > 0;
    the text features and the probe carry nothing."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h = rng.normal(size=8) * np.r_[3.0, np.ones(7)]  # the informative direction carries the most variance
        right = bool(h[0] > 0)
        feats = {"q_chars": float(rng.random()), "q_numbers": 1.0, "q_operators": 1.0,
                 "probe_mean_logprob": float(-rng.random()), "probe_min_logprob": -1.0, "probe_first_entropy": 1.0,
                 "probe_max_entropy": 1.0, "probe_tokens": 2.0, "probe_finished": 1.0}
        out.append(Sample(feats, right, True, probe_ms=20.0, on_ms=200.0, reasoning_tokens=40, on_cold_ms=200.0,
                          hidden=h.astype(np.float32), prefill_ms=10.0))
    return out


def test_calibrate_keeps_the_signal_that_measures_best_on_held_out_queries():
    fitted, chosen, _, _, measured = fit_cascade(_samples(), CalibrateOptions(hidden_components=4))
    au = measured["auroc"]
    assert au["hidden"] > 0.9 and au["text"] < 0.75, au
    assert measured["chosen"] in ("hidden", "text+hidden") and fitted.projection is not None
    assert any(k.startswith("hidden_pc") for k in fitted.gate_weights)
    # held out, the hidden gate answers the right half directly at on's accuracy, far under on's 200 ms
    assert chosen["accuracy"] >= 0.99 and chosen["mean_latency_ms"] < 150
    # without the hidden state only the text and probe candidates are fitted
    text_only = [Sample(**{**s.__dict__, "hidden": None}) for s in _samples()]
    _, _, _, _, m2 = fit_cascade(text_only, CalibrateOptions())
    assert set(m2["candidates"]) == {"text", "none"}


def test_auroc_by_hand_matches_the_definition():
    y = np.array([1, 0, 1, 0, 1])
    s = np.array([0.9, 0.1, 0.4, 0.4, 0.8])
    # pairs (pos, neg): 0.9>0.1,0.9>0.4, 0.4>0.1, 0.4=0.4 (half), 0.8>0.1, 0.8>0.4 -> 5.5 / 6
    assert signals.auroc(s, y) == pytest.approx(5.5 / 6)
    assert signals.auroc(s, np.ones(5)) is None


@pytest.mark.slow
def test_llama_cpp_reads_the_state_of_the_last_prompt_token_only(caplog):
    """On the real tiny student: one output row (the last token's), and the same state a
    full embeddings-on pass gives at that position."""
    import ctypes

    from thinkling.runtime import models
    from thinkling.runtime.backends.base import BackendOptions
    from thinkling.runtime.backends.llama_cpp import open_backend

    path = models.resolve("arith-student").path
    b = open_backend(str(path), BackendOptions(n_ctx=256, n_threads=1))
    try:
        toks = b.tokenize("What is 12 + 30?", add_special=True)
        logits, hidden = b.eval_hidden(toks)
        C = b._C
        assert hidden.shape == (b.n_embd,) and np.isfinite(hidden).all()
        # only the last token was an output: asking for the one before it finds nothing, and
        # llama.cpp's own log says how many outputs the pass computed
        with caplog.at_level("ERROR", logger="thinkling.runtime.llama_cpp.native"):
            assert not ctypes.cast(C.llama_get_embeddings_ith(b._ctx, -2), ctypes.c_void_p).value
        assert "n_outputs=1" in caplog.text
        plain = b.eval  # embeddings are off again: a decode step gives logits as before
        b.truncate(0)
        ref_logits = plain(toks).copy()
        assert np.allclose(ref_logits, logits, atol=1e-3)
        # reference: the whole prompt in one pass with embeddings on, row of the last token
        b.truncate(0)
        C.llama_set_embeddings(b._ctx, True)
        b._decode(toks, all_logits=True)
        ref = np.ctypeslib.as_array(C.llama_get_embeddings_ith(b._ctx, len(toks) - 1), shape=(b.n_embd,)).copy()
        C.llama_set_embeddings(b._ctx, False)
        assert np.allclose(ref, hidden, atol=1e-3)
    finally:
        b.close()
