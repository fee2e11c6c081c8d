"""Unit tests of the streaming text helpers and the sampler (no model needed)."""

import numpy as np
import pytest

from thinkling.runtime.sampling import Sampler, apply_penalties, entropy, log_softmax_at
from thinkling.runtime.textstream import Detokenizer, ReasoningSplitter, StopMatcher, split_reasoning
from thinkling.runtime.types import SamplingParams


def test_detokenizer_never_splits_multibyte_characters():
    text = "naïve — 日本語 🙂"
    raw = text.encode()
    pieces = {i: raw[i:i + 1] for i in range(len(raw))}  # one byte per "token"
    detok = Detokenizer(pieces.__getitem__)
    out = []
    for i in range(len(raw)):
        delta = detok.add(i)
        delta.encode("utf-8")  # a split character would be a replacement char or raise
        assert "\ufffd" not in delta
        out.append(delta)
    out.append(detok.flush())
    assert "".join(out) == text


def test_stop_matcher_across_deltas_and_holdback():
    m = StopMatcher(["\nUser:"])
    emitted = []
    for d in ["Hello", " there\n", "Us", "er: more"]:
        safe, hit = m.feed(d)
        emitted.append(safe)
        if hit:
            break
    assert "".join(emitted) == "Hello there"
    assert hit


def test_stop_matcher_releases_false_alarm():
    m = StopMatcher(["STOP"])
    a, hit_a = m.feed("ab ST")
    b, hit_b = m.feed("ILL")
    assert (a, hit_a, hit_b) == ("ab ", False, False)
    assert a + b + m.flush() == "ab STILL"


@pytest.mark.parametrize("chunks", [["<think>a b</think>42"], list("<think>a b</think>42"),
                                    ["<thi", "nk>a ", "b</th", "ink>4", "2"]])
def test_reasoning_split_pre(chunks):
    s = ReasoningSplitter()
    ans, rea = "", ""
    for c in chunks:
        a, r = s.feed(c)
        ans, rea = ans + a, rea + r
    a, r = s.flush()
    assert (ans + a, rea + r) == ("42", "a b")


def test_reasoning_split_post_and_prefilled():
    assert split_reasoning("42<think>because</think>") == ("42", "because")
    assert split_reasoning("step one</think>7", start_in_reasoning=True) == ("7", "step one")
    assert split_reasoning("no tags at all") == ("no tags at all", "")


def test_unterminated_reasoning_stays_reasoning():
    assert split_reasoning("<think>still going") == ("", "still going")


def test_greedy_is_argmax_and_ignores_seed():
    logits = np.array([0.1, 3.0, 2.9, -1.0], dtype=np.float32)
    for seed in (0, 1, 2):
        assert Sampler(SamplingParams(temperature=0.0, seed=seed)).sample(logits, []) == 1


def test_top_k_one_is_greedy_even_when_hot():
    logits = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    s = Sampler(SamplingParams(temperature=5.0, top_k=1, top_p=1.0, min_p=0.0, seed=3))
    assert {s.sample(logits, []) for _ in range(20)} == {int(np.argmax(logits))}


def test_seeded_sampling_is_reproducible_and_respects_top_k():
    logits = np.random.default_rng(1).normal(size=500).astype(np.float32)
    p = SamplingParams(temperature=1.0, top_k=5, top_p=1.0, min_p=0.0, seed=42)
    a = [Sampler(p).sample(logits, []) for _ in range(1)]
    s1, s2 = Sampler(p), Sampler(p)
    seq1 = [s1.sample(logits, []) for _ in range(50)]
    seq2 = [s2.sample(logits, []) for _ in range(50)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert set(seq1) <= set(np.argsort(-logits)[:5].tolist())


def test_repeat_penalty_only_when_set():
    logits = np.array([2.0, 1.9], dtype=np.float32)
    assert Sampler(SamplingParams(temperature=0.0)).sample(logits, [0, 0]) == 0
    assert Sampler(SamplingParams(temperature=0.0, repeat_penalty=1.5)).sample(logits, [0]) == 1


def test_frequency_penalty_grows_with_each_generated_occurrence():
    logits = np.array([2.0, 1.5, 0.0], dtype=np.float32)
    p = SamplingParams(temperature=0.0, frequency_penalty=0.4)
    assert Sampler(p).sample(logits, [0]) == 0  # 2.0 - 0.4 > 1.5
    assert Sampler(p).sample(logits, [0, 0]) == 1  # 2.0 - 0.8 < 1.5: a repeat changes the argmax
    assert Sampler(SamplingParams(temperature=0.0)).sample(logits, [0, 0, 0]) == 0  # off by default


def test_presence_penalty_is_paid_once_per_token():
    logits = np.array([2.0, 1.5, 0.0], dtype=np.float32)
    assert Sampler(SamplingParams(temperature=0.0, presence_penalty=0.6)).sample(logits, [0]) == 1
    # 0.4 once, however often the token came: 1.6 stays above 1.5
    assert Sampler(SamplingParams(temperature=0.0, presence_penalty=0.4)).sample(logits, [0] * 5) == 0


def test_penalties_count_generated_tokens_only():
    logits = np.array([2.0, 1.5, 0.0], dtype=np.float32)
    p = SamplingParams(temperature=0.0, frequency_penalty=0.4, presence_penalty=0.2)
    assert Sampler(p, n_prompt=4).sample(logits, [0, 0, 0, 0]) == 0  # all prompt
    assert Sampler(p, n_prompt=4).sample(logits, [0, 0, 0, 0, 0]) == 1  # one generated: 2.0-0.6 < 1.5


def test_apply_penalties_is_openais_formula_and_copies():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50).astype(np.float32)
    before = logits.copy()
    history = [7, 7, 3, 9, 9, 9, 7, 1, 2, 3, 3, 3, 3]  # the first 3 are the prompt
    p = SamplingParams(frequency_penalty=0.75, presence_penalty=-0.5)
    got = apply_penalties(logits, history, p, n_prompt=3)
    expect = before.astype(np.float64)
    for t in set(history[3:]):  # an independent count, token by token
        c = history[3:].count(t)
        expect[t] -= 0.75 * c + (-0.5) * (c > 0)
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(logits, before)  # the caller's logits are untouched
    assert apply_penalties(logits, history, SamplingParams()) is logits  # nothing set: no copy


def test_negative_penalties_favour_repeats():
    logits = np.array([1.5, 2.0], dtype=np.float32)
    assert Sampler(SamplingParams(temperature=0.0, frequency_penalty=-1.0)).sample(logits, [0]) == 0


def test_greedy_with_penalties_is_deterministic():
    logits = np.random.default_rng(2).normal(size=1000).astype(np.float32)
    history = np.random.default_rng(3).integers(0, 1000, size=200).tolist()
    p = [SamplingParams(temperature=0.0, frequency_penalty=1.3, presence_penalty=0.7, seed=s) for s in (0, 1, None)]
    picks = {Sampler(q, n_prompt=50).sample(logits, history) for q in p for _ in range(3)}
    assert picks == {int(np.argmax(apply_penalties(logits, history, p[0], n_prompt=50)))}


def test_logprob_and_entropy():
    logits = np.log(np.array([0.5, 0.25, 0.25]))
    assert log_softmax_at(logits, 0) == pytest.approx(np.log(0.5))
    assert entropy(logits) == pytest.approx(-(0.5 * np.log(0.5) + 2 * 0.25 * np.log(0.25)))
