"""The Gemma 3 270M reasoning student through the runtime: assembled on first use from
the embedded base and the committed adapter (cached in THINKLING_HOME afterwards), then
each thinking mode produces its format on real llama.cpp."""

import re
from pathlib import Path

import pytest

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams, models

RECIPE = Path(__file__).resolve().parent.parent / "distill" / "artifacts" / "gemma-arith" / "student.json"
STEP = re.compile(r"^\d+ [-+*] \d+ = \d+$")

pytestmark = pytest.mark.skipif(not RECIPE.exists(), reason="Gemma student adapter not built (docs/distill.md)")


@pytest.fixture(scope="module")
def student():
    with Engine("gemma-3-270m-arith", EngineConfig(n_ctx=512, n_threads=2, queue_size=2)) as eng:
        yield eng


def ask(eng, q, think, **kw):
    return eng.generate(GenerationRequest(messages=[Message("user", q)], max_tokens=200,
                                          sampling=SamplingParams(temperature=0), think=think, **kw))


def test_assembled_registered_and_family_detected(student):
    assert student.describe().thinking_family == "template-mode"
    assert "gemma-3-270m-arith" in models.registered_names()
    path = models.resolve("gemma-3-270m-arith").path
    assert (path.parent / "manifest.json").is_file() and (path.parent / "thinkling.json").is_file()


def test_off_answers_directly(student):
    r = ask(student, "37 + 4 * 12 - 9", "off")
    assert r.reasoning == "" and re.fullmatch(r"\d+", r.text.strip()), r


def test_on_reasons_in_steps_then_answers(student):
    r = ask(student, "What is 37 + 4 * 12 - 9?", "on")
    lines = [ln for ln in r.reasoning.strip().splitlines() if ln.strip()]
    assert len(lines) >= 2 and all(STEP.match(ln.strip()) for ln in lines), r.reasoning
    assert re.fullmatch(r"\d+", r.text.strip()), r.text


def test_post_answers_before_rationale(student):
    req = GenerationRequest(messages=[Message("user", "58 - 7 * 3")], max_tokens=200,
                            sampling=SamplingParams(temperature=0), think="post")
    chunks = list(student.stream(req))
    answer_idx = [i for i, c in enumerate(chunks) if c.text]
    reasoning_idx = [i for i, c in enumerate(chunks) if c.reasoning]
    assert answer_idx and reasoning_idx and max(answer_idx) < min(reasoning_idx)


def test_budget_forcing_still_answers(student):
    r = ask(student, "23 + 45 + 67 - 8", "on", reasoning_budget=6)
    assert r.decision.budget == 6
    assert re.fullmatch(r"\d+", r.text.strip()), r.text


def test_greedy_is_deterministic(student):
    a, b = ask(student, "64 - 5 * 7 + 12", "on"), ask(student, "64 - 5 * 7 + 12", "on")
    assert (a.reasoning, a.text) == (b.reasoning, b.text)
