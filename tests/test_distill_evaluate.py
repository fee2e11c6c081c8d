"""The one evaluator (distill.evaluate) on the real tiny arith-student, and the model
card generated from records (distill.card)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from thinkling.bench.tasksets import load_tasks, score
from thinkling.distill import card
from thinkling.distill.evaluate import EvalOptions, evaluate, records_from_answers

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / "distill" / "artifacts" / "arith-student" / "gguf" / "arith-student-q8_0.gguf"
MODES_RECORD = ROOT / "bench" / "results" / "modes-arith-student.json"
needs_student = pytest.mark.skipif(not GGUF.exists(), reason="arith-student GGUF not built (docs/distill.md)")

WORDS = [  # word answers scored by the exact checker; the arithmetic student knows no weekdays
    {"question": "What day comes 2 days after Monday?", "answer": "Wednesday", "check": "exact",
     "group": "weekday/offset"},
    {"question": "What day comes 1 day after Friday?", "answer": "Saturday", "check": "exact",
     "group": "weekday/offset"},
    {"question": "14 + 31", "answer": "45", "check": "exact", "group": "weekday/digits"},
    {"question": "14 + 31", "answer": "forty-five", "check": "exact", "group": "weekday/digits"},
]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _recount(per_query: list[dict], key: str, modes) -> dict:
    """Accuracy and mean tokens per ``key`` and mode, counted again from the outcomes."""
    out: dict = {}
    for q in per_query:
        g = out.setdefault(q[key], {m: [0, 0, 0] for m in modes})
        for m in modes:
            g[m][0] += q["modes"][m]["correct"]
            g[m][1] += 1
            g[m][2] += q["modes"][m]["tokens"]
    return out


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    arith = [r for r in load_tasks("arith-test")][::40][:5]  # five held-out problems, 1-4 ops
    files = [_write(folder / "arith.jsonl", arith), _write(folder / "words.jsonl", WORDS)]
    opts = EvalOptions(modes=("off", "on"), max_tokens=160, threads=1, n_ctx=256)
    return files, evaluate("arith-student", files, opts)


@needs_student
def test_per_group_records_match_a_recount_from_the_outcomes(records):
    files, rec = records
    rows = {(r["question"], r["answer"]): r for f in files for r in load_tasks(f)}
    assert rec["n"] == len(rec["per_query"]) == 5 + len(WORDS) and rec["model"] == "arith-student"
    for q in rec["per_query"]:  # each outcome scored by the task's own checker
        for m in ("off", "on"):
            assert q["modes"][m]["correct"] == score(rows[(q["question"], q["label"])], q["modes"][m]["answer"])
    for key, table in (("group", rec["by_group"]), ("task", rec["by_task"])):
        again = _recount(rec["per_query"], key, ("off", "on"))
        assert set(again) == set(table)
        for name, per_mode in again.items():
            s = table[name]
            for m, (right, n, tokens) in per_mode.items():
                assert s["n"] == n and s["modes"][m]["accuracy"] == right / n
                assert s["modes"][m]["mean_tokens"] == pytest.approx(tokens / n, abs=0.01)
            assert s["direct_right"] == s["modes"]["off"]["accuracy"]
            gain = 100 * (s["modes"]["on"]["accuracy"] - s["modes"]["off"]["accuracy"])
            assert s["on_minus_off_points"] == pytest.approx(gain) and s["chain_helps"] == (gain > 0)
    assert set(rec["by_task"]) == {"arith", "weekday"}  # the file's stem, then the group's task part
    # the exact checker: digits right, spelled-out digits and weekdays wrong for this student
    assert rec["by_group"]["weekday/offset"]["modes"]["off"]["accuracy"] == 0.0
    assert [q["modes"]["off"]["correct"] for q in rec["per_query"] if q["group"] == "weekday/digits"] == [True, False]
    assert rec["by_task"]["arith"]["modes"]["on"]["mean_tokens"] > rec["by_task"]["arith"]["modes"]["off"]["mean_tokens"]


def test_answers_from_elsewhere_aggregate_the_same_way():
    rows = [{"question": "1 + 1", "answer": "2", "check": "number", "group": "a/1"},
            {"question": "2 + 2", "answer": "4", "check": "number", "group": "a/2"},
            {"question": "day?", "answer": "Monday", "check": "exact", "group": "b/1"}]
    rec = records_from_answers(rows, {"off": ["2", "5", "monday."], "on": ["so 2", "4", "Tuesday"]})
    assert rec["by_task"]["a"]["modes"]["off"]["accuracy"] == 0.5
    assert rec["by_task"]["a"]["modes"]["on"]["accuracy"] == 1.0
    assert rec["by_task"]["a"]["on_minus_off_points"] == 50.0 and rec["by_task"]["a"]["chain_helps"]
    assert rec["by_task"]["b"]["chain_helps"] is False and rec["by_group"]["b/1"]["direct_right"] == 1.0
    assert rec["overall"]["modes"]["off"]["accuracy"] == pytest.approx(2 / 3)


def _records_folder(tmp_path: Path) -> Path:
    rows = [{"question": f"q{i}", "answer": str(i), "check": "number", "group": f"{t}/1"}
            for i, t in enumerate(["arithmetic", "arithmetic", "arithmetic", "calendar"])]
    rec = records_from_answers(rows, {"off": ["0", "9", "9", "3"], "on": ["0", "1", "2", "9"],
                                      "post": ["0", "1", "9", "9"]})
    rec.update(model="skills-student", model_file="skills-student-q8_0.gguf", tasks=["mix.jsonl"])
    for q in rec["per_query"]:  # a measured record also has tokens and latency per query
        for m, o in q["modes"].items():
            o.update(tokens=3 if m == "off" else 40, latency_ms=100.0 if m == "off" else 900.0)
    from thinkling.distill.evaluate import aggregate

    rec.update(aggregate(rec["per_query"], ("off", "on", "post")))
    (tmp_path / "eval.json").write_text(json.dumps(rec))
    data = tmp_path / "data"
    data.mkdir()
    (data / "stats.json").write_text(json.dumps(  # the shape python -m thinkling.distill data writes
        {"spec": {"chat": "gemma", "k": 3, "mistake_rate": 0.15}, "rows": 17,
         "tasks": {"calendar": {"problems": 5, "written": 10, "kept": 9, "injected": 1, "caught": 1, "missed": 0,
                                "false_rejections": 0, "precision": 1.0, "recall": 1.0,
                                "rows_by_mode": {"think": 6, "post": 3}}}}))
    (tmp_path / "train_report.json").write_text(json.dumps(  # the trainer's record
        {"recipe": "gemma-3-270m", "global_step": 1234, "train_seconds_this_run": 3600.5, "data": str(data),
         "options": {"lr": 0.0005, "batch_size": 16},
         "log": [{"step": 10, "loss": 0.9}, {"step": 1234, "train_loss": 0.21}]}))
    (tmp_path / "retention.json").write_text(json.dumps(  # python -m thinkling.distill retention --json
        {"model": "skills-student", "base_model": "gemma-3-270m", "split": "test", "max_tokens": 48,
         "n": 40, "exact": 0.625, "prefix": 0.7, "prefix_share": 0.8125}))
    return tmp_path


def test_card_carries_the_records_numbers_and_follows_them(tmp_path):
    folder = _records_folder(tmp_path)
    text = card.render_card(card.load_records(folder))
    assert text.startswith("# skills-student")
    # arithmetic: off 1/3, on 3/3, post 2/3; calendar: off 1/1, on 0/1
    assert "| arithmetic | 3 | 33.3% | 100.0% | 66.7% | +66.7 | yes |" in text
    assert "| calendar | 1 | 100.0% | 0.0% | 0.0% | -100.0 | no |" in text
    assert "| **all** | 4 | 50.0% | 75.0% | 50.0% | +25.0 | yes |" in text
    assert "| `global_step` | 1,234 |" in text and "| `options.lr` | 0.0005 |" in text and "train_loss 0.21" in text
    assert "| 62.5% | 70.0% | 81.2% |" in text and "on 40 held-out general prompts" in text
    assert "| calendar | 5 | 10 | 9 | 1 | 1 | 0 | 0 | 100.0% | 100.0% | think 6, post 3 |" in text  # the data's stats.json
    rec = json.loads((folder / "eval.json").read_text())
    changed = copy.deepcopy(rec)
    changed["by_task"]["calendar"]["modes"]["on"]["accuracy"] = 1.0
    (folder / "eval.json").write_text(json.dumps(changed))
    assert "| calendar | 1 | 100.0% | 100.0% |" in card.render_card(card.load_records(folder))
    assert card.main(["--student", str(folder)]) == 0  # the CLI writes the same card
    assert "| calendar | 1 | 100.0% | 100.0% |" in (folder / "MODEL_CARD.md").read_text()


def test_card_with_a_bench_modes_record_counts_per_skill_from_its_outcomes(tmp_path):
    folder = _records_folder(tmp_path)
    modes = json.loads(MODES_RECORD.read_text())
    text = card.render_card(card.load_records(folder, modes=MODES_RECORD))
    on = next(r for r in modes["rows"] if r["mode"] == "on")
    assert f"| on | {100 * on['accuracy']:.1f}% | {on['mean_tokens']:.1f} |" in text
    outs = modes["per_query"]
    auto_right = sum(o["correct"] for o in outs["auto"]) / len(outs["auto"])
    assert f"| all | {len(outs['off'])} |" in text and f"{100 * auto_right:.1f}%" in text  # one skill: "all"
    modes["rows"][1]["accuracy"] = 0.123
    (folder / "modes.json").write_text(json.dumps(modes))
    assert "| on | 12.3% |" in card.render_card(card.load_records(folder))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_bad_task_file_is_one_error_line_from_the_cli(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "2 + 2", "answer": "4"}\n{"question": "3 + 3"}\n')
    r = _cli("-m", "thinkling.distill", "evaluate", "--model", "arith-student", "--tasks", str(bad), "--out",
             str(tmp_path / "out.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == f'python -m thinkling.distill evaluate: error: tasks file {bad} line 2: missing "answer"'
    assert not (tmp_path / "out.json").exists()
    r = _cli("-m", "thinkling.distill", "evaluate", "--model", "no-such-student", "--tasks", "arith-test", "--out",
             str(tmp_path / "out.json"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("python -m thinkling.distill evaluate: error: model not found: 'no-such-student'")
    r = _cli("-m", "thinkling.distill", "card", "--student", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"python -m thinkling.distill card: error: {tmp_path / 'eval.json'}: missing"), r.stderr


@needs_student
def test_card_from_the_evaluators_own_records(records, tmp_path):
    from thinkling.distill.evaluate import write_records

    _, rec = records
    write_records(rec, tmp_path / "eval.json")
    text = card.render_card(card.load_records(tmp_path))
    arith = rec["by_task"]["arith"]
    cells = " | ".join(f"{100 * arith['modes'][m]['accuracy']:.1f}%" for m in ("off", "on"))
    assert f"| arith | 5 | {cells} | {arith['on_minus_off_points']:+.1f} |" in text
    assert "`arith-student-q8_0.gguf` through the runtime (gguf, greedy, at most 160 new tokens)" in text


def test_seen_and_unseen_files_of_one_task_stand_side_by_side(tmp_path):
    rows = [{"question": "a", "answer": "1", "check": "number", "group": "gsm_symbolic/template 3", "source": "seen.jsonl"},
            {"question": "b", "answer": "2", "check": "number", "group": "gsm_symbolic/template 71",
             "source": "unseen.jsonl"}]
    rec = records_from_answers(rows, {"off": ["1", "0"], "on": ["1", "2"]})
    assert list(rec["by_task"]) == ["gsm_symbolic"]
    assert rec["by_source"]["seen.jsonl"]["modes"]["off"]["accuracy"] == 1.0
    assert rec["by_source"]["unseen.jsonl"]["modes"]["off"]["accuracy"] == 0.0
    (tmp_path / "eval.json").write_text(json.dumps(rec))
    assert "| unseen.jsonl | 1 | 0.0% | 100.0% |" in card.render_card(card.load_records(tmp_path))
    del rec["by_task"]["gsm_symbolic"]["modes"]["on"]
    (tmp_path / "eval.json").write_text(json.dumps(rec))
    with pytest.raises(card.CardError, match="lacks a field"):  # the CLI prints this as one line
        card.write_card(tmp_path)


@needs_student
def test_runtime_check_records_through_the_evaluator(monkeypatch):
    import thinkling.distill.runtime_check as rc

    written = {}
    monkeypatch.setattr(rc, "write_text_atomic", lambda path, text: written.update({str(path): json.loads(text)}))
    rec = rc.record()
    committed = json.loads((GGUF.parent / "runtime_check_sample.json").read_text())
    assert list(written) == [str(GGUF.parent / "runtime_check_sample.json")]
    assert [t["question"] for t in rec["tasks"]] == [t["question"] for t in committed["tasks"]]
    for mode, expected in committed["accuracy"].items():
        assert abs(rec["accuracy"][mode] - expected) <= 0.05, (mode, rec["accuracy"][mode], expected)
