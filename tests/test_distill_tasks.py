"""distill/tasks: the task table, its teachers and filters, and the data on disk (no torch)."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys

import pytest

from thinkling.distill.chat import ARITH_FORMAT, GEMMA_FORMAT
from thinkling.distill.data import ADAPTER_MIX, BASE_MIX, GEMMA_MIX, GEMMA_POLISH_MIX, make_dataset
from thinkling.distill.tasks import TASKS, Chain, TaskError, get_task
from thinkling.distill.tasks.dataset import DataSpec, make_data

pytest.importorskip("reasoning_gym")

N = 60  # problems per task in the per-task checks: seconds on 2 busy cores
OURS = [name for name in TASKS if name != "general"]  # "general" (D1b) needs a teacher model


def _hash(seed, mix, n, fmt) -> str:
    ex, st = make_dataset(seed, mix, n, fmt)
    blob = json.dumps([[e.prompt, e.completion, e.n_ops, e.mode] for e in ex]) + json.dumps(
        [st.written, st.kept, sorted(st.rejected_by_mistake.items()), sorted(st.missed_by_mistake.items()),
         st.false_rejections])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Hashes taken before arithmetic joined the task table (commit acef4ed): a seed's data must not move.
@pytest.mark.parametrize("mix,fmt,digest", [
    (BASE_MIX, ARITH_FORMAT, "08eac66c9e756625"),
    (ADAPTER_MIX, ARITH_FORMAT, "0fe35c63d473014f"),
    (GEMMA_MIX, GEMMA_FORMAT, "024f131e8b2adb12"),
    (GEMMA_POLISH_MIX, GEMMA_FORMAT, "7507c21ec8ecb6ed"),
])
def test_arithmetic_mixes_are_byte_identical(mix, fmt, digest):
    assert _hash(7, mix, 300, fmt) == digest


@pytest.fixture(scope="module", params=OURS)
def task(request):
    return TASKS[request.param]


@pytest.fixture(scope="module")
def train(task):
    return task.sample("train", N, 3)


def test_sample_is_deterministic_and_distinct(task, train):
    again = task.sample("train", N, 3)
    assert [p.question for p in again] == [p.question for p in train]
    assert len({p.question for p in train}) == N
    assert all(p.task == task.name and p.split == "train" and p.id.startswith(f"{task.name}/train/3/") for p in train)
    assert [p.question for p in task.sample("train", N, 4)] != [p.question for p in train]


def test_splits_are_disjoint(task, train):
    calib, test = task.sample("calib", N, 3), task.sample("test", N, 3)
    qs = [{p.question for p in s} for s in (train, calib, test)]
    assert not (qs[0] & qs[1]) and not (qs[0] & qs[2]) and not (qs[1] & qs[2])


def test_teacher_chains_pass_the_filter_and_score_right(task, train):
    rng = random.Random(0)
    multi = 0
    for p in train:
        chains = task.chains(p, 3, rng)
        assert chains, p.question
        assert len({c.path for c in chains}) == len(chains)  # distinct paths
        assert len({tuple(c.steps) for c in chains}) == len(chains)
        multi += len(chains) > 1
        for c in chains:
            assert task.verify(p, c) is None, (p.question, c)
            assert task.score(p, c.answer)
        assert not task.score(p, "no answer here")
    assert multi >= N // 2  # most problems get more than one path


def test_corrupted_chains_are_mostly_rejected(task, train):
    rng = random.Random(1)
    corrupted = rejected = 0
    for p in train:
        for c in task.chains(p, 3, rng):
            bad = task.corrupt(c, rng)
            if bad is None or bad == c:
                continue
            corrupted += 1
            rejected += task.verify(p, bad) is not None
    assert corrupted >= N
    assert rejected / corrupted >= 0.9, (rejected, corrupted)


def test_gsm_templates_70_to_99_only_in_test_unseen():
    gsm = TASKS["gsm_symbolic"]
    unseen = gsm.sample("test-unseen", 40, 5)
    assert all(70 <= p.meta["template"] <= 99 for p in unseen)
    for split in ("train", "calib", "test"):
        assert all(p.meta["template"] < 70 for p in gsm.sample(split, 80, 5))
    with pytest.raises(TaskError):
        TASKS["calendar"].sample("test-unseen", 1, 0)
    # the template is not only recorded: its own generator, on reasoning-gym's rng, wrote the question
    from reasoning_gym.arithmetic.gsm_symbolic import generators_00_49, generators_50_99

    for p in unseen[:10] + gsm.sample("train", 10, 5):
        t, m = p.meta["template"], p.meta
        gen = getattr(generators_00_49 if t < 50 else generators_50_99, f"generate_{t}")
        assert p.question.startswith(gen(random.Random(m["rg_seed"] + m["source_index"]), 1.0)["question"])


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TaskError, match="gsm_symbolic"):
        get_task("gsm")


def test_make_data_rows_and_stats():
    spec = DataSpec(("calendar", "letter_counting"), per_task=30, seed=1, chat="chatml", mistake_rate=0.3)
    rows, stats = make_data(spec)
    assert rows == make_data(spec)[0]
    assert {r["task"] for r in rows} == {"calendar", "letter_counting"}
    for r in rows:
        assert set(r) == {"prompt", "completion", "mode", "task", "level", "path", "id"}
        assert r["prompt"].startswith("<|im_start|>user\n") and r["completion"].endswith("<|im_end|>")
        assert (r["mode"] == "direct") == ("<think>" not in r["completion"])
    for s in stats.values():
        assert s.problems == 30 and s.kept + sum(s.rejected_by_reason.values()) == s.written
        assert s.injected and s.caught >= 0.9 * s.injected and s.false_rejections == 0


def test_make_data_paths_and_truncation():
    spec = DataSpec(("gsm_symbolic", "letter_counting"), per_task=40, seed=2, chat="arith", mistake_rate=0,
                    truncate_rate=0.5, paths={"gsm_symbolic": ("equations",)})
    rows, stats = make_data(spec)
    gsm = [r for r in rows if r["task"] == "gsm_symbolic" and r["mode"] != "direct"]
    assert gsm and {r["path"].split("/")[0] for r in gsm} == {"equations"}
    cut = [r for r in rows if r["path"].endswith("/cut")]
    assert cut and all(r["mode"] == "think" and "</think>" in r["completion"] for r in cut)
    assert {r["path"] for r in rows if r["task"] == "letter_counting"} >= {"spell", "matches"}
    with pytest.raises(ValueError, match="letter_counting"):
        make_data(DataSpec(("letter_counting",), per_task=1, paths={"letter_counting": ("nope",)}))


def test_make_data_takes_teacher_chains_and_direct_only_tasks(tmp_path):
    task = TASKS["letter_counting"]
    problems = task.sample("train", 5, 4)
    mine = Chain("teacher", [f"counted: {problems[0].answer}"], problems[0].answer)  # fails the filter
    good = task.chains(problems[1], 2, random.Random(0))[1]  # the matches path, brought by a teacher
    rows = [{"id": problems[0].id, "task": task.name, "kept": True, "chain": vars(mine)},
            {"id": problems[1].id, "task": task.name, "kept": True,
             "chain": {"path": "teacher", "steps": good.steps, "answer": good.answer}},
            {"id": problems[2].id, "task": task.name, "kept": False, "chain": vars(mine)}]
    f = tmp_path / "teach.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DataSpec(("letter_counting",), per_task=5, seed=4, mistake_rate=0, truncate_rate=0, k=3,
                    chains_files=(str(f),), paths={"letter_counting": ("teacher", "spell")})
    out, stats = make_data(spec)
    s = stats["letter_counting"]
    assert s.false_rejections == 1  # the teacher's bad chain met the filter
    assert {r["path"] for r in out} == {"teacher", "spell"}
    assert [r["id"] for r in out if r["path"] == "teacher"] == [problems[1].id]  # first of its problem
    general = pytest.importorskip("thinkling.distill.tasks.general")
    try:
        rows_g, _ = make_data(DataSpec(("general",), per_task=5, seed=0))
    except general.AnswersMissing:
        pytest.skip("the base model's answers are not generated")
    assert len(rows_g) == 5 and all(r["mode"] == "direct" and r["path"] == "direct" for r in rows_g)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "thinkling.distill", *args], capture_output=True, text=True, cwd=cwd)


def test_data_command_writes_jsonl_and_stats(tmp_path):
    out = tmp_path / "data"
    r = _cli("data", "--task", "basic_arithmetic,family_relationships", "--per-task", "20", "--seed", "2",
             "--chat", "gemma", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert rows and all(r["prompt"].startswith("<bos><start_of_turn>user\n") for r in rows)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == len(rows) and set(stats["tasks"]) == {"basic_arithmetic", "family_relationships"}
    assert not list(out.glob("*.tmp"))


def test_cli_bad_task_is_one_error_line(tmp_path):
    r = _cli("data", "--task", "calendar,nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "unknown task 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_data_command_writes_a_phase_mix_as_make_dataset_makes_it(tmp_path):
    # the arith-student's rebuild trains from disk on the rows its old build drew in memory
    out = tmp_path / "mix"
    r = _cli("data", "--mix", "adapter", "--rows", "300", "--seed", "7", "--chat", "arith", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    examples, stats = make_dataset(7, ADAPTER_MIX, 300, ARITH_FORMAT)
    assert [(r["prompt"], r["completion"], r["mode"], r["level"]) for r in rows] == \
        [(e.prompt, e.completion, e.mode, f"{e.n_ops} ops") for e in examples]
    report = json.loads((out / "stats.json").read_text())
    assert report["rows"] == 300 and report["filter"]["written"] == stats.written
    assert sum(report["rows_by_mode"].values()) == 300 and not list(out.glob("*.tmp"))


@pytest.mark.parametrize("args,message", [
    (["--mix", "nope"], "unknown mix 'nope'"),
    (["--mix", "adapter", "--task", "calendar"], "give --task"),
    ([], "give --task"),
])
def test_data_command_mix_errors_are_one_line(tmp_path, args, message):
    r = _cli("data", *args, "--chat", "arith", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_export_and_tasks_commands(tmp_path):
    out = tmp_path / "gsm-unseen.jsonl"
    r = _cli("export", "--task", "gsm_symbolic", "--split", "test-unseen", "--n", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5 and all(row["check"] == "number" and row["group"].startswith("gsm_symbolic/")
                                  for row in rows)
    listing = _cli("tasks").stdout
    assert all(name in listing for name in OURS)
