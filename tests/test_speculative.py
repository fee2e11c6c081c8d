"""Speculative decoding with prompt-lookup drafts: the drafter, the loop's
exactness on a scripted backend (every kept token is plain decoding's, each
still its own chunk), and greedy equivalence on the real models through llama.cpp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thinkling.runtime.generate import GenerationPlan, ReasoningMarkup, join_stream, stream_generate
from thinkling.runtime.models import ModelRef
from thinkling.runtime.speculative import NgramDrafter, SpeculativeConfig
from thinkling.runtime.thinking import ThinkingController, ThinkingProfile
from thinkling.runtime.types import GenerationRequest, Message, SamplingParams
from scripted_backend import ScriptedBackend, ScriptedManyBackend

ROOT = Path(__file__).resolve().parent.parent
REF = ModelRef(name="scripted", path=Path("/nonexistent/scripted.gguf"), backend="scripted",
               thinking_format={"family": "thinkling-arith"})
PROFILE = ThinkingProfile(weights={"bias": 2.0, "probe_mean_logprob": 3.0}, threshold=0.5, probe_max_tokens=8)
GREEDY = SamplingParams(temperature=0)


# --- the drafter -----------------------------------------------------------------

def _trusting(**kw) -> SpeculativeConfig:
    """A drafter that believes its guesses and finds extra positions nearly free."""
    return SpeculativeConfig(prior_accept=0.95, prior_cost=0.05, **kw)


def test_drafter_proposes_what_followed_the_latest_earlier_match():
    h = [1, 2, 3, 4, 9, 1, 2, 3, 5, 7, 1, 2]
    d = NgramDrafter(_trusting(), h)
    assert d.propose(4) == [3, 5, 7, 1]  # "1 2" last seen before position 7 -> 3 5 7 1
    h.append(3)  # "1 2 3": the longest match (n=3) wins
    assert d.propose(2) == [5, 7]


def test_drafter_needs_min_match_tokens():
    h = [5, 6, 7, 8]
    d = NgramDrafter(_trusting(min_match=2), h)
    assert d.propose(4) == []  # no bigram repeats
    h += [5, 6]
    assert d.propose(4) == [7, 8, 5, 6]


def test_guess_length_follows_the_cost_model():
    d = NgramDrafter(SpeculativeConfig(prior_accept=0.6, prior_cost=0.35), [])
    assert d.best_length(8) == 1  # (1 + .6) / 1.35 beats plain; longer guesses do not
    d = NgramDrafter(SpeculativeConfig(prior_accept=0.2, prior_cost=0.35), [])
    assert d.best_length(8) == 0  # unlikely guesses are not worth a wider pass
    d = NgramDrafter(SpeculativeConfig(prior_accept=0.95, prior_cost=0.1), [])
    assert d.best_length(8) == 8


def test_measured_costs_and_misses_shorten_then_stop_the_guesses():
    h = [1, 2, 3, 1, 2]
    d = NgramDrafter(SpeculativeConfig(prior_accept=0.9, prior_cost=0.1), h)
    long_guess = d.best_length(8)
    d.observe_pass(1, 0.020)
    d.observe_pass(5, 0.060)  # an extra position costs half a pass here
    assert abs(d.extra_cost - 0.5) < 1e-9 and d.best_length(8) < long_guess
    assert d.costs.single_s == 0.020  # kept for the next generation on this model
    for _ in range(6):
        d.feedback(3, 0)  # guesses that miss at once
    assert d.accept_rate < 0.3 and d.propose(5) == []
    for _ in range(60):  # declined lookups drift back toward the prior: drafting is tried again
        d.propose(5)
    assert d.propose(5) == [3]
    assert (d.drafted, d.accepted) == (18, 0)


# --- the loop on the scripted backend ----------------------------------------------

def _plan(backend, text, speculative, **kw):
    kw.setdefault("max_tokens", 40)
    return GenerationPlan(prompt_tokens=backend.tokenize(text, add_special=False), sampling=GREEDY,
                          speculative=_trusting() if speculative else None, **kw)


THINK = "<|bos|><|user|>1 + 2<|think|><|assistant|>"


def test_greedy_output_and_chunks_are_those_of_plain_decoding():
    plain_b, spec_b = ScriptedBackend(), ScriptedManyBackend()
    markup = ReasoningMarkup()
    plain = list(stream_generate(plain_b, _plan(plain_b, THINK, False, markup=markup)))
    spec = list(stream_generate(spec_b, _plan(spec_b, THINK, True, markup=ReasoningMarkup())))
    assert [c.token_ids for c in plain[:-1]] == [c.token_ids for c in spec[:-1]]  # one token per chunk, same ones
    assert [(c.text, c.reasoning) for c in plain] == [(c.text, c.reasoning) for c in spec]
    t = spec[-1].timings
    assert t.drafted_tokens > 0 and 0 < t.accepted_tokens <= t.drafted_tokens
    assert max(spec_b.passes[1:]) > 1  # several tokens scored in one pass
    assert len(spec_b.passes) < plain_b.evals  # fewer backend passes than plain decoding


def test_the_cache_after_a_rejected_guess_continues_as_plain_decoding():
    """The chain "abcdefghij" repeats, so guesses are long; budget forcing then cuts it,
    which a guess never predicts: what follows must still be plain decoding's."""
    for budget in (3, 12, 17, 25):
        outs = []
        for backend in (ScriptedBackend(), ScriptedManyBackend()):
            plan = _plan(backend, THINK, isinstance(backend, ScriptedManyBackend),
                         markup=ReasoningMarkup(budget=budget))
            r = join_stream(stream_generate(backend, plan), "s")
            outs.append((r.reasoning, r.text, r.tokens, r.finish_reason))
            if isinstance(backend, ScriptedManyBackend):
                # the cache holds what was generated (less the last sampled token), no unverified guess
                assert backend.kv_tokens == plan.prompt_tokens + r.tokens[:len(backend.kv_tokens) - len(plan.prompt_tokens)]
        assert outs[0] == outs[1], budget
        assert len(outs[1][0]) == budget and outs[1][1] == "42"


def test_stop_strings_cancel_and_max_tokens_stop_at_the_same_token():
    for kw in ({"stops": ["efg"]}, {"max_tokens": 13}):
        got = []
        for backend in (ScriptedBackend(), ScriptedManyBackend()):
            plan = _plan(backend, THINK, isinstance(backend, ScriptedManyBackend), markup=ReasoningMarkup(), **kw)
            got.append(join_stream(stream_generate(backend, plan), "s"))
        assert (got[0].reasoning, got[0].tokens, got[0].finish_reason) == \
            (got[1].reasoning, got[1].tokens, got[1].finish_reason), kw
    # a cancel observed after the 9th token stops there, although a guess was in flight
    for backend in (ScriptedBackend(), ScriptedManyBackend()):
        seen = []
        plan = _plan(backend, THINK, True, markup=ReasoningMarkup(),
                     should_stop=lambda: "cancelled" if len(seen) >= 9 else None)
        for c in stream_generate(backend, plan):
            seen.extend(c.token_ids)
        assert len(seen) == 9 and c.finish_reason == "cancelled"


def test_sampling_never_drafts():
    b = ScriptedManyBackend()
    plan = _plan(b, THINK, True, markup=ReasoningMarkup())
    plan.sampling = SamplingParams(temperature=0.7, seed=1)
    last = list(stream_generate(b, plan))[-1]
    assert last.timings.drafted_tokens == 0 and set(b.passes[1:]) == {1}


def test_every_mode_through_the_controller_matches_plain():
    for think in ("off", "on", "post", "auto"):
        results = []
        for spec in ("off", "ngram"):
            ctl = ThinkingController(ScriptedManyBackend(), REF, profile=PROFILE)
            req = GenerationRequest(messages=[Message("user", "12 + 30")], sampling=GREEDY, max_tokens=48,
                                    think=think, speculative=spec)
            r = join_stream(ctl.stream(req, should_stop=lambda: None), "s")
            results.append((r.text, r.reasoning, r.tokens, r.finish_reason, r.decision.mode))
        assert results[0] == results[1], think


# --- real models through llama.cpp -----------------------------------------------

STUDENT = "arith-student"
CHAINS = ["37 + 48 - 9", "What is 6 * 7 + 15?", "88 - 23 + 41 - 7", "5 * 9 - 12 + 33", "What is 70 - 8 * 6?",
          "14 + 27 + 36", "9 * 8 - 40 + 3", "What is 61 + 19 - 44?"]


@pytest.fixture(scope="module", params=[STUDENT, "arith-student-onnx"])
def student(request):
    """The student on llama.cpp and on onnxruntime (both backends have eval_many)."""
    from thinkling.runtime import Engine, EngineConfig

    if request.param.endswith("onnx"):
        pytest.importorskip("onnxruntime")
    with Engine(request.param, EngineConfig(n_ctx=512, n_threads=2)) as eng:
        yield eng


def _greedy(engine, content, spec, think="on", max_tokens=80):
    req = GenerationRequest(messages=[Message("user", content)], sampling=GREEDY, max_tokens=max_tokens,
                            think=think, speculative=spec)
    return engine.generate(req)


def test_student_chains_are_token_identical_with_drafting(student):
    drafted = accepted = 0
    for q in CHAINS:
        for think in ("on", "post", "off"):
            plain, spec = _greedy(student, q, "off", think), _greedy(student, q, "ngram", think)
            assert spec.tokens == plain.tokens and spec.text == plain.text and spec.reasoning == plain.reasoning, q
            assert plain.timings.drafted_tokens == 0
            drafted += spec.timings.drafted_tokens
            accepted += spec.timings.accepted_tokens
    assert drafted > 0 and accepted > 0  # chains repeat their numbers: some guesses are kept


def test_eval_many_scores_each_position_like_eval(student):
    b = student.backend
    toks = b.tokenize("12 + 30 = 42", add_special=True)
    b.truncate(0)
    one = [np.array(b.eval([t])) for t in toks]
    b.truncate(0)
    b.eval(toks[:1])
    many = np.array(b.eval_many(toks[1:]))
    assert many.shape == (len(toks) - 1, b.n_vocab)
    for i, row in enumerate(many):
        assert int(row.argmax()) == int(one[i + 1].argmax())
        assert np.abs(row - one[i + 1]).max() < 0.05
    b.truncate(0)


REWRITE = ("Rewrite this sentence exactly, word for word: The quick brown fox jumps over the lazy dog "
           "near the old river bank every morning before sunrise.")


@pytest.mark.slow
def test_gemma_greedy_is_identical_and_drafts_on_a_rewrite(engine):
    drafted = {}
    for content, max_tokens in ((REWRITE, 32), ("Why is the sky blue?", 24)):
        reqs = [GenerationRequest(messages=[Message("user", content)], sampling=GREEDY, max_tokens=max_tokens,
                                  think="off", speculative=spec) for spec in ("off", "ngram")]
        plain, spec = (engine.generate(r) for r in reqs)
        assert spec.tokens == plain.tokens and spec.text == plain.text, content
        drafted[content] = (spec.timings.drafted_tokens, spec.timings.accepted_tokens)
    assert drafted[REWRITE][1] > 0, drafted  # the rewrite repeats its prompt: guesses are kept
