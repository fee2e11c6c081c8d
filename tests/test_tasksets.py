"""Task sets that carry their checker (bench/tasksets.py): every checker, generated
reasoning-gym sets, malformed files, and a word-answer set through `bench modes`
and `thinkling calibrate` on the scripted backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from thinkling.bench.tasksets import TaskSetError, load_tasks, score, write_tasks

ROOT = Path(__file__).resolve().parent.parent
CALENDAR = "rg:calendar_arithmetic?seed={seed}&n={n}&tasks=weekday_offset,count_days"


# --- checkers ------------------------------------------------------------------------

@pytest.mark.parametrize("row, answer, right", [
    ({"answer": "76"}, "The answer is 76", True),
    ({"answer": "76"}, "76 or 77", False),  # the last number counts
    ({"answer": "76"}, "", False),
    ({"answer": "-4"}, "so -4", True),
    ({"answer": "3"}, "3.0", False),  # an integer label is compared as before: the last run of digits
    ({"answer": "3.5"}, "about 3.50", True),
    ({"answer": "3.5"}, "3.6", False),
    ({"answer": "3.5", "tol": 0.1}, "3.45", True),
    ({"answer": "3.5", "tol": 0.1}, "3.7", False),
    ({"answer": "1000", "tol": "1%"}, "roughly 1,005 people", True),
    ({"answer": "1000", "tol": "1%"}, "1,015", False),
])
def test_number(row, answer, right):
    assert score({"check": "number", **row}, answer) is right


def test_number_is_the_default_check_and_an_integer_label_scores_as_bench_modes_always_did():
    rows = load_tasks("arith-test")
    raw = [json.loads(line) for line in (ROOT / "bench/tasks/arith-test.jsonl").read_text().splitlines()]
    assert [r["answer"] for r in rows] == [str(r["answer"]) for r in raw]
    assert all(r["check"] == "number" and r["group"] == f"{r['n_ops']} ops" for r in rows)
    row = {"question": "2 + 2", "answer": 4}
    assert score(row, "4") and not score(row, "14") and not score(row, "4 5")


@pytest.mark.parametrize("answer, right", [
    ("Monday", True), ("  monday. ", True), ("MONDAY!", True), ("Mon day", False),
    ("It is Monday", False), ("Tuesday", False),
])
def test_exact(answer, right):
    assert score({"answer": "Monday", "check": "exact"}, answer) is right


@pytest.mark.parametrize("answer, right", [
    ("B", True), ("The answer is B.", True), ("b", True),
    ("a dog is B", True),  # the article "a" does not name choice "A"
    ("A or B", False),  # names two choices
    ("C", False), ("none of them", False),
])
def test_choice_letters(answer, right):
    assert score({"answer": "B", "choices": ["A", "B", "C"], "check": "choice"}, answer) is right


def test_choice_words():
    row = {"answer": "yes", "choices": ["yes", "no"], "check": "choice"}
    assert score(row, "Yes, it is.") and not score(row, "no") and not score(row, "yes or no")


def test_regex():
    row = {"answer": "Monday", "check": "regex", "pattern": r"(?i)\bmon(day)?\b"}
    assert score(row, "It is MON.") and score(row, "monday") and not score(row, "Monotone")


def test_unknown_check_in_a_row_is_a_typed_error():
    with pytest.raises(TaskSetError, match="unknown check 'nope'"):
        score({"answer": "1", "check": "nope"}, "1")


# --- reasoning-gym -------------------------------------------------------------------

def test_a_calendar_item_is_scored_by_reasoning_gyms_own_checker():
    pytest.importorskip("reasoning_gym")
    from reasoning_gym import get_score_answer_fn

    rows = load_tasks(CALENDAR.format(seed=3, n=30))
    weekday = next(r for r in rows if r["metadata"]["task"] == "weekday_offset")
    assert weekday["check"] == "reasoning-gym:calendar_arithmetic"
    assert weekday["group"] == "calendar_arithmetic/weekday_offset"
    other = next(d for d in ("Monday", "Tuesday") if d != weekday["answer"])
    assert score(weekday, weekday["answer"]) and not score(weekday, other)
    # reasoning-gym gives 0.1 for "a weekday, not the right one": not right here
    assert get_score_answer_fn("calendar_arithmetic")(other, weekday) == pytest.approx(0.1)
    count = next(r for r in rows if r["metadata"]["task"] == "count_days")
    assert score(count, count["answer"]) and not score(count, str(int(count["answer"]) + 3))


def test_generated_sets_are_deterministic_by_seed_and_disjoint_across_seeds(tmp_path):
    pytest.importorskip("reasoning_gym")
    a, again = load_tasks(CALENDAR.format(seed=1, n=40)), load_tasks(CALENDAR.format(seed=1, n=40))
    b = load_tasks(CALENDAR.format(seed=2, n=40))
    assert a == again and len(a) == 40
    assert not {r["question"] for r in a} & {r["question"] for r in b}
    assert {r["group"] for r in a} == {"calendar_arithmetic/weekday_offset", "calendar_arithmetic/count_days"}
    # frozen to a file, the set reads back and scores the same
    out = tmp_path / "cal.jsonl"
    write_tasks(a, out)
    frozen = load_tasks(str(out))
    assert frozen == a and all(score(r, r["answer"]) for r in frozen)


@pytest.mark.parametrize("spec, fragment", [
    ("rg:no_such_dataset?n=3", "no dataset 'no_such_dataset'"),
    ("rg:calendar_arithmetic?n=3&colour=red", "has no setting colour"),
    ("rg:calendar_arithmetic?n=3&tasks=weekday_offset,flying", "refused the settings"),
    ("rg:calendar_arithmetic?n=zero", "must be integers"),
])
def test_bad_generated_specs(spec, fragment):
    pytest.importorskip("reasoning_gym")
    with pytest.raises(TaskSetError, match=fragment):
        load_tasks(spec)


# --- malformed files -----------------------------------------------------------------

GOOD = '{"question": "1 + 1", "answer": 2}\n'


@pytest.mark.parametrize("bad, fragment", [
    ('{"question": "q"}', 'missing "answer"'),
    ('{"answer": "a"}', 'missing "question"'),
    ('{"question": "q", "answer": "a", "check": "spelling"}', "unknown check 'spelling'"),
    ('{"question": "q", "answer": "a", "check": "reasoning-gym"}', "needs a dataset"),
    ('{"question": "q", "answer": "a"', "not valid JSON"),
    ('["q", "a"]', "not a JSON object"),
    ('{"question": "q", "answer": "c", "check": "choice", "choices": ["a", "b"]}', 'not one of "choices"'),
    ('{"question": "q", "answer": "a", "check": "regex", "pattern": "(a"}', "not a regular expression"),
    ('{"question": "q", "answer": "1", "tol": "lots"}', '"tol" is not a number'),
    ('{"question": "q", "answer": "Monday"}', 'needs a number as "answer"'),
    ('{"question": "q", "answer": "a", "check": "regex"}', 'needs a "pattern"'),
])
def test_malformed_rows_name_the_file_and_line(tmp_path, bad, fragment):
    path = tmp_path / "x.jsonl"
    path.write_text(GOOD + "\n" + bad + "\n")
    with pytest.raises(TaskSetError, match=fragment) as e:
        load_tasks(str(path))
    assert (e.value.source, e.value.line) == (str(path), 3) and isinstance(e.value, ValueError)
    assert str(e.value).startswith(f"tasks file {path} line 3: ")


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TaskSetError, match="not found .*arith-calib, arith-test") as e:
        load_tasks("no-such-set")
    assert e.value.line is None
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(TaskSetError, match="no tasks"):
        load_tasks(str(tmp_path / "empty.jsonl"))


@pytest.mark.parametrize("argv", [
    ["-m", "thinkling.bench.cli", "modes", "--model", "arith-student", "--repeats", "1", "--tasks"],
    ["-m", "thinkling.runtime.cli", "calibrate", "--model", "arith-student", "--repeats", "1", "--tasks"],
    ["-m", "thinkling.bench.cli", "tasks", "make", "--out", "never.jsonl"],
])
def test_the_command_lines_print_one_line_for_a_bad_task_file(tmp_path, argv):
    bad = tmp_path / "x.jsonl"
    bad.write_text(GOOD + GOOD + '{"question": "3 + 3"}\n')
    proc = subprocess.run([sys.executable, *argv, str(bad)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [f'{proc.stderr.split(":")[0]}: error: tasks file {bad} line 3: '
                                                'missing "answer"']
    assert not (tmp_path / "never.jsonl").exists()


def test_tasks_make_freezes_a_generated_set(tmp_path, capsys):
    pytest.importorskip("reasoning_gym")
    from thinkling.bench.cli import main

    out = tmp_path / "cal.jsonl"
    assert main(["tasks", "make", CALENDAR.format(seed=5, n=12), "--out", str(out)]) == 0
    assert "wrote 12 tasks" in capsys.readouterr().out
    assert load_tasks(str(out)) == load_tasks(CALENDAR.format(seed=5, n=12))


# --- a word-answer set end to end ----------------------------------------------------

WORDS = [  # (question, answer): direct says "monday"; reasoning says "friday"
    ("easy day one", "Monday"), ("hard day two", "Friday"), ("easy day three", "Monday"),
    ("hard day four", "Friday"), ("hard day five", "Sunday"), ("easy day six", "Monday"),
]


def _word_engine(model, config=None):
    """``Engine(model, config)`` as bench/modes.py and bench/calibrate.py call it,
    over a scripted backend that answers with weekday names."""
    from thinkling.runtime import Engine
    from thinkling.runtime.models import ModelRef
    from scripted_backend import ID, VOCAB, ScriptedBackend

    class WordBackend(ScriptedBackend):
        """Direct: "monday" (confident unless the question says hard); reasoning:
        "<think>abc</think>friday"; post: "monday<think>xyz</think>"."""

        def _next(self):
            start = max(i for i, t in enumerate(self._kv) if t == ID["<|assistant|>"]) + 1
            prompt = "".join(VOCAB[t] for t in self._kv[:start])
            mode = "direct" if prompt.endswith("<|direct|><|assistant|>") else \
                "post" if prompt.endswith("<|post|><|assistant|>") else "think"
            script = {"direct": list("monday"), "post": [*"monday", "<think>", *"xyz", "</think>"],
                      "think": ["<think>", *"abc", "</think>", *"friday"]}[mode] + ["<|end|>"]
            n = len(self._kv) - start
            sharp = 0.5 if mode == "direct" and "hard" in prompt else 8.0
            return ID[script[min(n, len(script) - 1)]], sharp

    ref = ModelRef(name="words", path=Path(model) / "words.gguf", backend="scripted",
                   thinking_format={"family": "thinkling-arith"})
    return Engine.from_backend(WordBackend(), ref, config, profile=None)


def test_a_word_answer_set_runs_through_bench_modes_and_calibrate(tmp_path, monkeypatch, capsys):
    from thinkling.bench import calibrate, modes
    from thinkling.bench.cli import main as bench_main
    from thinkling.runtime.cli import main as thinkling_main
    from thinkling.runtime.thinking import ThinkingProfile

    tasks = tmp_path / "days.jsonl"
    write_tasks([{"question": q, "answer": a, "check": "exact", "group": "easy" if q.startswith("easy") else "hard"}
                 for q, a in WORDS], tasks)
    monkeypatch.setattr(modes, "Engine", _word_engine)
    monkeypatch.setattr(calibrate, "Engine", _word_engine)

    prof_path = tmp_path / "words.thinking.json"
    assert thinkling_main(["calibrate", "--model", str(tmp_path), "--tasks", str(tasks), "--repeats", "1",
                           "--max-tokens", "32", "--out", str(prof_path)]) == 0
    prof = ThinkingProfile.load(prof_path)
    assert prof.fitted_on == f"{tasks} (n=6)"

    out_json = tmp_path / "modes.json"
    assert bench_main(["modes", "--model", str(tmp_path), "--tasks", str(tasks), "--repeats", "1",
                       "--max-tokens", "32", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    r = json.loads(out_json.read_text())
    acc = {row["mode"]: row["accuracy"] for row in r["rows"]}
    assert acc["off"] == pytest.approx(3 / 6) and acc["on"] == pytest.approx(2 / 6)
    assert acc["post"] == pytest.approx(3 / 6)  # the answer before the rationale is "monday"
    assert acc["oracle"] == pytest.approx(5 / 6)
    assert r["accuracy_by_group"]["off"] == {"easy": 1.0, "hard": 0.0}
    assert r["accuracy_by_group"]["on"] == {"easy": 0.0, "hard": pytest.approx(2 / 3)}
    assert "accuracy_by_ops" not in r  # the rows carry no n_ops
    easy, hard = r["groups"]["easy"], r["groups"]["hard"]
    assert (easy["n"], easy["direct_right"], easy["n_within_reach"]) == (3, 1.0, 3)
    assert (hard["n_within_reach"], hard["n_out_of_reach"]) == (0, 1)  # "Sunday": both wrong
    assert hard["mean_on_tokens"] == pytest.approx(easy["mean_on_tokens"]) and easy["mean_on_tokens"] > 6
    assert r["n_within_reach"] == 3 and r["n_out_of_reach"] == 1
    # the reach figures follow from the per-query latencies (their sign is noise on a scripted backend)
    q = {m: r["per_query"][m] for m in ("off", "on", "auto")}
    easy_ids = [i for i, o in enumerate(q["off"]) if o["correct"]]
    within = sum(q["on"][i]["latency_ms"] - q["off"][i]["latency_ms"] for i in easy_ids)
    saved = sum(q["on"][i]["latency_ms"] - q["auto"][i]["latency_ms"] for i in easy_ids)
    on_total = sum(o["latency_ms"] for o in q["on"])
    assert r["within_reach_share_of_on"] == pytest.approx(within / on_total)
    assert r["savings_within_reach"] == (pytest.approx(saved / within) if within > 0 else None)
    assert "easy" in printed and "hard" in printed
    assert r["per_query"]["off"][0]["answer"] == "monday" and r["per_query"]["off"][0]["correct"]


def test_recorded_bench_modes_answers_score_as_they_were_recorded():
    """Every answer in the committed `bench modes` records on the built-in arithmetic
    sets scores now as it did under the old integer check: results do not change."""
    records = [p for p in sorted((ROOT / "bench/results").glob("modes-*.json"))
               if json.loads(p.read_text()).get("tasks") in ("arith-test", "arith-calib")]
    assert records
    seen = 0
    for path in records:
        r = json.loads(path.read_text())
        rows = {t["question"]: t for t in load_tasks(r["tasks"])}
        for outs in r["per_query"].values():
            for o in outs:
                assert score(rows[o["question"]], o["answer"]) == o["correct"], (path.name, o)
                seen += 1
    assert seen >= 800


def test_reach_counts_what_is_within_reach_and_the_oracles_savings_apart():
    from thinkling.bench.modes import Outcome, group_table, reach

    def o(mode, correct, ms, tokens=1):
        return Outcome("q", "1", mode, "", 0, correct, ms, ms, ms, tokens, mode == "on")

    off = [o("off", True, 10), o("off", False, 10), o("off", False, 10)]
    on = [o("on", True, 100, 20), o("on", True, 100, 30), o("on", False, 80, 40)]
    auto = [o("auto", True, 40), o("auto", True, 100), o("auto", False, 80)]
    r = reach(off, on, auto)
    assert (r["n_within_reach"], r["n_out_of_reach"]) == (1, 1)
    assert r["within_reach_share_of_on"] == pytest.approx(90 / 280)  # query 0: on 100 - off 10
    assert r["savings_within_reach"] == pytest.approx(60 / 90)  # auto saved 100 - 40 of it
    assert r["out_of_reach_oracle_share_of_on"] == pytest.approx(70 / 280)  # query 2: both wrong
    assert reach(off[1:], on[1:], auto[1:])["savings_within_reach"] is None  # nothing within reach
    tasks = [{"question": "q", "group": g} for g in ("a", "b", "b")]
    g = group_table(tasks, {"off": off, "on": on, "auto": auto})
    assert list(g) == ["a", "b"] and g["b"]["n"] == 2 and g["b"]["direct_right"] == 0.0
    assert g["b"]["mean_on_tokens"] == 35 and g["b"]["accuracy"]["on"] == 0.5
    assert g["a"]["savings_within_reach"] == pytest.approx(60 / 90) and g["b"]["savings_within_reach"] is None
