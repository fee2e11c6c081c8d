"""The distilled student through the runtime on its committed GGUF (real llama.cpp)."""

import json
import re
from pathlib import Path

import pytest

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams, models

ART = Path(__file__).resolve().parent.parent / "distill" / "artifacts" / "arith-student" / "gguf"
CHECK = ART / "runtime_check_sample.json"
STEP = re.compile(r"^\d+ [-+*] \d+ = \d+$")

pytestmark = pytest.mark.skipif(not (ART / "arith-student-q8_0.gguf").exists(),
                                reason="student GGUF not built (see docs/distill.md)")


@pytest.fixture(scope="module")
def student():
    with Engine("arith-student", EngineConfig(n_ctx=256, n_threads=1, queue_size=2)) as eng:
        yield eng


def ask(eng, q, think, **kw):
    return eng.generate(GenerationRequest(messages=[Message("user", q)], max_tokens=160,
                                          sampling=SamplingParams(temperature=0), think=think, **kw))


def test_registered_and_family_detected(student):
    assert student.describe().thinking_family == "template-mode"
    assert "arith-student" in models.registered_names()


def test_off_answers_directly(student):
    r = ask(student, "37 + 4 * 12 - 9", "off")
    assert r.reasoning == "" and re.fullmatch(r"\d+", r.text.strip()), r


def test_on_reasons_in_steps_then_answers(student):
    r = ask(student, "What is 37 + 4 * 12 - 9?", "on")
    lines = [ln for ln in r.reasoning.strip().splitlines() if ln.strip()]
    assert lines and all(STEP.match(ln.strip()) for ln in lines), r.reasoning
    assert re.fullmatch(r"\d+", r.text.strip()), r.text


def test_post_answers_before_rationale(student):
    req = GenerationRequest(messages=[Message("user", "58 - 7 * 3")], max_tokens=160,
                            sampling=SamplingParams(temperature=0), think="post")
    chunks = list(student.stream(req))
    answer_idx = [i for i, c in enumerate(chunks) if c.text]
    reasoning_idx = [i for i, c in enumerate(chunks) if c.reasoning]
    assert answer_idx and reasoning_idx and max(answer_idx) < min(reasoning_idx)


def test_budget_forcing_on_the_real_student(student):
    r = ask(student, "23 + 45 + 67 - 8", "on", reasoning_budget=5)
    assert r.decision.budget == 5
    assert re.fullmatch(r"\d+", r.text.strip()), r.text  # still an answer after the forced close


@pytest.mark.skipif(not CHECK.exists(), reason="no recorded check sample")
def test_student_reproduces_recorded_accuracy(student):
    rec = json.loads(CHECK.read_text())
    for mode, expected in rec["accuracy"].items():
        ok = 0
        for t in rec["tasks"]:
            r = ask(student, t["question"], mode)
            nums = re.findall(r"-?\d+", r.text)
            ok += bool(nums) and nums[-1] == str(t["answer"])
        got = ok / len(rec["tasks"])
        assert abs(got - expected) <= 0.05, (mode, got, expected)


def test_auto_cascade_with_the_committed_profile(student):
    """The calibrated profile's gate sends a three-operation problem straight to
    reasoning (no probe); a one-operation problem is probed and its confident
    direct answer returned."""
    hard = ask(student, "37 + 4 * 12 - 9", "auto")
    d = hard.decision.to_dict()  # the wire shape
    assert (d["stage"], d["mode"]) == ("gate", "on") and d["score"] < d["threshold"], d
    assert "probe_ms" not in d and hard.reasoning.strip() and hard.text.strip() == "76"
    easy = ask(student, "14 + 31", "auto")
    d = easy.decision.to_dict()  # the wire shape
    assert (d["stage"], d["mode"]) == ("probe", "off") and d["score"] >= d["threshold"], d
    assert d["gate_score"] >= d["skip_below"] and easy.reasoning == "" and easy.text.strip() == "45"


def test_calibrate_and_bench_modes_command_lines_on_the_student(tmp_path, capsys):
    """`thinkling calibrate` then `bench modes` on a few tasks: the files they
    write and what they print (structure only; timings are not asserted)."""
    from thinkling.bench.cli import main as bench_main
    from thinkling.runtime.cli import main as thinkling_main
    from thinkling.runtime.thinking import ThinkingProfile

    prof_path, modes_json = tmp_path / "profile.json", tmp_path / "modes.json"
    assert thinkling_main(["calibrate", "--model", "arith-student", "--tasks", "arith-calib", "--limit", "12",
                           "--repeats", "1", "--threads", "1", "--max-tokens", "160",
                           "--out", str(prof_path)]) == 0
    assert "gate skip below" in capsys.readouterr().out
    prof = ThinkingProfile.load(prof_path)
    assert set(prof.gate_weights) == {"bias", "q_chars", "q_numbers", "q_operators"}
    assert prof.fitted_on == "arith-calib (n=12)"
    assert any(row["skip_below"] == prof.skip_below for row in prof.gate_curve)
    assert any(row["threshold"] == prof.threshold for row in prof.curve)

    assert bench_main(["modes", "--model", "arith-student", "--tasks", "arith-test", "--limit", "6",
                       "--repeats", "2", "--threads", "1", "--max-tokens", "160", "--json", str(modes_json)]) == 0
    out = capsys.readouterr().out
    assert "auto - on mean latency, paired per query" in out
    r = json.loads(modes_json.read_text())
    assert [row["mode"] for row in r["rows"]][:4] == ["off", "on", "post", "auto"]
    assert r["repeats"] == 2 and r["answers_changed_between_repeats"] >= 0
    assert all(len(r["per_query"][m]) == 6 for m in ("off", "on", "post", "auto"))
    lo, hi = r["auto_minus_on_latency"]["ci95_ms"]
    assert lo <= r["auto_minus_on_latency"]["mean_ms"] <= hi
