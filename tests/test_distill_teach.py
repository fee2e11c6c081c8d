"""``python -m thinkling.distill teach`` against a real OpenAI-compatible endpoint: ``thinkling
serve`` on loopback with the registered ``arith-student`` standing in as the teacher
(it writes ``<think>`` arithmetic chains; the server returns them as
``reasoning_content``), asked through the official ``openai`` client.

The parser and the resume file are also checked offline. No timing assertions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from thinkling.bench.local_server import free_port, wait_healthy
from thinkling.distill.tasks import Chain, get_task
from thinkling.distill.teach import (TeachConfig, TeachError, judge, load_done, make_row, parse_reply, stats_path,
                           teach)

REPO = Path(__file__).resolve().parent.parent
TASK = "arithmetic"
THREADS = os.environ.get("THINKLING_TEST_THREADS", "1")


# --- offline: the parser and the output file ----------------------------------------

def test_parse_reasoning_content_and_answer():
    steps, answer = parse_reply("76", "4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76\n")
    assert steps == ["4 * 12 = 48", "37 + 48 = 85", "85 - 9 = 76"] and answer == "76"


def test_parse_inline_think_and_numbered_steps():
    assert parse_reply("<think>2 + 3 = 5\n5 * 4 = 20</think>20") == (["2 + 3 = 5", "5 * 4 = 20"], "20")
    text = "1. 4 * 12 = 48\n2) 37 + 48 = 85\nStep 3: 85 - 9 = 76\n\n**Answer:** 76."
    assert parse_reply(text) == (["4 * 12 = 48", "37 + 48 = 85", "85 - 9 = 76"], "76")
    # a decimal that starts a line is not a step number
    assert parse_reply("12.5 + 3 = 15.5\nFinal answer: 15.5") == (["12.5 + 3 = 15.5"], "15.5")
    # reasoning_content plus an Answer line in the content
    assert parse_reply("So:\nAnswer: Monday", "1. 3 + 4 = 7") == (["3 + 4 = 7"], "Monday")


def test_parse_prefers_the_numbered_steps_to_a_reasoning_monologue():
    # vLLM with a reasoning parser: the thinking in reasoning_content, the asked-for format in the content
    monologue = "Okay, so 4 times 12... that is 48. Then add 37."
    steps = ["4 * 12 = 48", "37 + 48 = 85"]
    assert parse_reply("1. 4 * 12 = 48\n2. 37 + 48 = 85\nAnswer: 85", monologue) == (steps, "85")
    assert parse_reply("So it is \\boxed{85}.", "4 * 12 = 48\n37 + 48 = 85") == (["4 * 12 = 48", "37 + 48 = 85"], "85")


def test_parse_without_an_answer():
    assert parse_reply("The answer is five, I think") == ([], "")
    assert parse_reply("<think>4 * 12 = 48\n37 + 4") == (["4 * 12 = 48", "37 + 4"], "")


def test_judge_uses_the_tasks_filter_and_checker():
    task = get_task(TASK)
    p = task.sample("train", 1, 0)[0]
    good = task.chains(p, 1, __import__("random").Random(0))[0]
    assert judge(task, p, Chain("teacher", good.steps, good.answer), "stop") is None
    assert judge(task, p, Chain("teacher", good.steps, good.answer), "length") == "cut at max_tokens"
    assert judge(task, p, Chain("teacher", good.steps, ""), "stop") == "no answer"
    wrong = str(int(p.answer) + 1)
    assert judge(task, p, Chain("teacher", good.steps, wrong), "stop") is not None


def test_a_checker_that_trips_on_teacher_text_rejects_the_row(caplog):
    class Tripping:
        name = TASK

        def verify(self, problem, chain):
            return int(float("nan"))  # as a verifier that evaluates a teacher's "5 / 0 = 1"

        def score(self, problem, answer):
            return True

    p = get_task(TASK).sample("train", 1, 0)[0]
    with caplog.at_level("WARNING"):
        reason = judge(Tripping(), p, Chain("teacher", ["5 / 0 = 1"], "1"), "stop")
    assert reason.startswith("checker error: ValueError") and "checker failed" in caplog.text


def _rows(n: int) -> list[dict]:
    task = get_task(TASK)
    return [make_row(p, 0, Chain("teacher", ["1 + 1 = 2"], "2"), "wrong answer", "raw")
            for p in task.sample("train", n, 0)]


def test_truncated_last_line_is_dropped_and_the_file_rewritten(tmp_path, caplog):
    out = tmp_path / "chains.jsonl"
    rows = _rows(3)
    full = "".join(json.dumps(r) + "\n" for r in rows)
    out.write_text(full + json.dumps(_rows(4)[3])[:40])  # a kill in the middle of a write
    with caplog.at_level("WARNING"):
        assert load_done(out, TASK, "train") == rows
    assert "truncated last line" in caplog.text
    assert out.read_text() == full  # the partial line is gone, the rest kept byte for byte
    # a last line cut inside its JSON that still got its newline is dropped the same way
    out.write_text(full + '{"id": "x", "sam\n')
    assert load_done(out, TASK, "train") == rows and out.read_text() == full


def test_a_broken_line_inside_or_a_foreign_file_is_an_error(tmp_path):
    out = tmp_path / "chains.jsonl"
    rows = _rows(2)
    out.write_text(json.dumps(rows[0]) + "\nnot json\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(TeachError, match="line 2 is not JSON"):
        load_done(out, TASK, "train")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TeachError, match="another --out"):
        load_done(out, TASK, "test")


# --- live: thinkling serve as the teacher --------------------------------------------

@contextlib.contextmanager
def serve_teacher(log: Path, queue_size: int = 8):
    """``thinkling serve --model arith-student`` on a free loopback port; yields its /v1 URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "thinkling.runtime.cli", "serve", "--model", "arith-student", "--port", str(port),
           "--ctx", "512", "--threads", THREADS, "--queue-size", str(queue_size)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKLING_") or k == "THINKLING_HOME"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout_s=300)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with serve_teacher(tmp_path_factory.mktemp("teacher") / "server.log") as url:
        yield url


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "thinkling.distill", "teach", *args]


def _keys(out: Path) -> list[tuple[str, int]]:
    return [(r["id"], r["sample"]) for r in map(json.loads, out.read_text().splitlines())]


def test_a_run_writes_every_row_with_verdicts_that_match_reverification(endpoint, tmp_path):
    out = tmp_path / "chains.jsonl"
    cfg = TeachConfig(endpoint=endpoint, model="arith-student", task=TASK, out=out, n_problems=6, n=2,
                      concurrency=3, max_tokens=160, extra_body={"think": "on"})
    stats = teach(cfg)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and len(set(_keys(out))) == 12
    task = get_task(TASK)
    problems = {p.id: p for p in task.sample("train", 6, 0)}
    for r in rows:
        p = problems[r["id"]]
        assert (r["question"], r["reference"], r["level"]) == (p.question, p.answer, p.level)
        assert r["chain"]["path"] == "teacher" and r["raw"]
        chain = Chain(**r["chain"])
        again = judge(task, p, chain, "stop") if r["reject"] != "cut at max_tokens" else r["reject"]
        assert r["reject"] == again and r["kept"] == (again is None)
        if r["kept"]:
            assert chain.steps and task.score(p, chain.answer)
    # the student is a real teacher on these small problems: some chains pass the filter
    assert stats.accepted >= 1
    assert stats.accepted + sum(stats.rejected.values()) == stats.rows == 12
    saved = json.loads(stats_path(out).read_text())
    assert saved["accepted"] == stats.accepted and saved["reject_rate"] == stats.reject_rate
    assert saved["errors"] == {}
    # asked again with the same arguments: nothing left to ask, nothing added
    assert teach(cfg).written_now == 0 and len(out.read_text().splitlines()) == 12


def test_a_killed_run_resumes_without_duplicates_or_losses(endpoint, tmp_path):
    out = tmp_path / "chains.jsonl"
    n_problems, n = 20, 3
    args = _cli("--endpoint", endpoint, "--model", "arith-student", "--task", TASK, "--n-problems", str(n_problems),
                "--n", str(n), "--concurrency", "1", "--max-tokens", "160", "--extra-body", '{"think": "on"}',
                "--out", str(out))
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + 300
    while time.monotonic() < end and proc.poll() is None:
        if out.exists() and out.read_text().count("\n") >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = out.read_text()
    complete = before[: before.rfind("\n") + 1]
    assert 3 <= complete.count("\n") < n_problems * n
    # as if the kill had landed in the middle of a write
    with open(out, "a") as f:
        f.write('{"id": "arithmetic/train/0/')
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "truncated last line" in done.stderr
    after = out.read_text()
    assert after.startswith(complete)  # nothing written before the kill is lost or changed
    keys = _keys(out)
    assert len(keys) == n_problems * n and len(set(keys)) == n_problems * n
    assert json.loads(stats_path(out).read_text())["rows"] == n_problems * n


def test_a_busy_endpoint_is_asked_again_with_backoff(tmp_path):
    # one running and one waiting request, eight sent at once: the server answers 429, the
    # client backs off and asks again, and the run still ends complete
    out = tmp_path / "chains.jsonl"
    with serve_teacher(tmp_path / "server.log", queue_size=1) as url:
        r = subprocess.run(_cli("--endpoint", url, "--model", "arith-student", "--task", TASK, "--n-problems", "6",
                                "--n", "4", "--concurrency", "8", "--retries", "10", "--max-tokens", "160",
                                "--extra-body", '{"think": "on"}', "--out", str(out)),
                           cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Retrying request" in r.stderr
    assert " 429 " in (tmp_path / "server.log").read_text()
    keys = _keys(out)
    assert len(keys) == 24 == len(set(keys))
    assert json.loads(stats_path(out).read_text())["errors"] == {}


def test_an_unreachable_endpoint_is_one_error_line_after_bounded_retries(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    r = subprocess.run(_cli("--endpoint", url, "--model", "m", "--task", TASK, "--n-problems", "2",
                            "--retries", "2", "--concurrency", "1", "--out", str(tmp_path / "c.jsonl")),
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln.lower()]
    want = f"python -m thinkling.distill teach: error: endpoint unreachable: {url} after 2 retries"
    assert len(errors) == 1 and errors[0].startswith(want)
    assert r.stderr.count("Retrying request") == 2  # the client's backoff, bounded by --retries


def test_bad_arguments_are_one_line(tmp_path):
    r = subprocess.run(_cli("--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--task", "no-such-task",
                            "--out", str(tmp_path / "c.jsonl")), cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("python -m thinkling.distill teach: error: unknown task 'no-such-task'")


def test_kept_teacher_chains_are_read_by_problem_for_distill_data(tmp_path):
    from thinkling.distill.teach import load_teacher_chains

    task = get_task(TASK)
    p, q = task.sample("train", 2, 0)
    rows = [make_row(p, 0, Chain("teacher", ["1 + 1 = 2"], "2"), None, "raw"),
            make_row(p, 1, Chain("teacher", ["9"], "9"), "wrong answer", "raw"),
            make_row(q, 0, Chain("teacher", ["2 + 2 = 4"], "4"), None, "raw"),
            {**make_row(q, 1, Chain("teacher", ["x"], "y"), None, "raw"), "task": "calendar"}]
    f = tmp_path / "chains.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_teacher_chains([f], TASK) == {p.id: [Chain("teacher", ["1 + 1 = 2"], "2")],
                                               q.id: [Chain("teacher", ["2 + 2 = 4"], "4")]}
    f.write_text(json.dumps(rows[0]) + "\n" + '{"id": "cut')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        load_teacher_chains([f], TASK)
