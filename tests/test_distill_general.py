"""The ``general`` task (self-distillation prompts answered by the base model) and the
retention metric of ``distill.retention``."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from thinkling.distill.retention import agreement, greedy_answers, train_answer
from thinkling.distill.tasks import TaskError
from thinkling.distill.tasks.general import (ANSWERS_FILE, AnswersMissing, GeneralTask, load_answers, load_prompts,
                                   prompts_of)

REPO = Path(__file__).resolve().parent.parent


def test_the_prompt_list_and_its_fixed_split():
    prompts = load_prompts()
    assert len(prompts) == 240
    assert len({p.id for p in prompts}) == 240 and len({p.prompt.lower() for p in prompts}) == 240
    assert [p.id for p in prompts] == [f"g{i:03d}" for i in range(1, 241)]
    test = prompts_of("test")
    assert len(test) == 60 and len(prompts_of("train")) == 180
    assert all(int(p.id[1:]) % 4 == 0 for p in test)
    # every kind is held out by a quarter
    kinds, held = Counter(p.kind for p in prompts), Counter(p.kind for p in test)
    assert set(kinds) == {"fact", "def", "how", "complete", "misc"}
    assert all(held[k] * 4 == kinds[k] for k in kinds)
    with pytest.raises(TaskError, match="unknown general split 'calib'"):
        prompts_of("calib")


def test_train_answer_cuts_a_capped_answer_back_to_a_full_sentence():
    assert train_answer(" Paris is the capital. It is big and", "length") == "Paris is the capital."
    assert train_answer("Paris is the capital. It is big and", "stop") == "Paris is the capital. It is big and"
    assert train_answer("1. Boil water\n2. Add the", "length") == "1. Boil water"
    assert train_answer("no sentence end at all", "length") == "no sentence end at all"
    assert train_answer("Version 3.5 is out", "length") == "Version 3.5 is out"  # a decimal point is no end


def test_agreement_on_a_small_case():
    base = {"a": "Paris is the capital of France.", "b": "Blue and yellow make green.",
            "c": " ".join(f"w{i}" for i in range(20)), "d": "Yes."}
    same = agreement(dict(base), base)
    assert (same.n, same.exact, same.prefix, same.prefix_share) == (4, 1.0, 1.0, 1.0)
    got = {"a": "Paris  is the capital of France.",  # whitespace aside: the same
           "b": "Blue and red make purple.",  # 2 of 5 words, then a difference
           "c": " ".join(f"w{i}" for i in range(16)) + " other words",  # first 16 words identical only
           }  # "d" not answered: disagrees
    r = agreement(got, base)
    assert r.n == 4
    assert r.exact == 0.25
    assert r.prefix == 0.5  # a and c
    assert r.prefix_share == round((1 + 2 / 5 + 1 + 0) / 4, 4)


def _answers_file(tmp_path, ids) -> Path:
    path = tmp_path / "answers.jsonl"
    rows = [{"id": i, "prompt": "?", "model": "base", "max_tokens": 48, "text": f"Answer {i} and more",
             "finish_reason": "stop", "tokens": 4, "train_answer": f"Answer {i}."} for i in ids]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_general_task_samples_stored_answers_and_has_no_chains(tmp_path):
    task = GeneralTask(answers=_answers_file(tmp_path, [p.id for p in load_prompts()]))
    test = task.sample("test", 100, seed=3)
    assert len(test) == 60 and {p.split for p in test} == {"test"}
    assert [p.id for p in task.sample("test", 5, seed=3)] == [p.id for p in test[:5]]
    assert {p.id for p in task.sample("test", 60, seed=4)} == {p.id for p in test}
    p = test[0]
    pid = p.meta["prompt_id"]
    assert p.id == f"general/test/{pid}" and p.answer == f"Answer {pid}." and p.check == "exact"
    assert task.chains(p, 4, random.Random(0)) == []
    assert task.score(p, f"answer {pid}") and task.score(p, f"Answer {pid} and more")
    assert not task.score(p, "Something else")
    train = task.sample("train", 500, seed=0)
    assert len(train) == 180 and not {q.meta["prompt_id"] for q in train} & {q.meta["prompt_id"] for q in test}


def test_missing_answers_name_the_command(tmp_path):
    with pytest.raises(AnswersMissing, match="python -m thinkling.distill general"):
        GeneralTask(answers=tmp_path / "none.jsonl").sample("train", 3, 0)
    with pytest.raises(AnswersMissing, match="has no answer for"):
        GeneralTask(answers=_answers_file(tmp_path, ["g001"])).sample("train", 180, 0)


def test_the_committed_answers_cover_every_prompt():
    answers = load_answers()
    prompts = load_prompts()
    assert set(answers) == {p.id for p in prompts}
    for p in prompts:
        a = answers[p.id]
        assert a["prompt"] == p.prompt and a["model"] == "gemma-3-270m" and a["text"]
        assert a["train_answer"] == train_answer(a["text"], a["finish_reason"])


@pytest.mark.slow
def test_the_stored_answers_are_the_base_models_greedy_answers():
    """The base asked again agrees with itself: retention of the base is 1 (greedy is
    deterministic), so the stored file really is what the base says."""
    stored = load_answers()
    prompts = prompts_of("test")[:3]
    got = {r["id"]: r["text"] for r in greedy_answers("gemma-3-270m", prompts, stored[prompts[0].id]["max_tokens"])}
    r = agreement(got, {p.id: stored[p.id]["text"] for p in prompts})
    assert (r.exact, r.prefix) == (1.0, 1.0)


def test_retention_cli_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "thinkling.distill", "retention", "--model", "gemma-3-270m",
                        "--answers", str(tmp_path / "none.jsonl")], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("python -m thinkling.distill retention: error:")
    assert "python -m thinkling.distill general" in r.stderr
    r = subprocess.run([sys.executable, "-m", "thinkling.distill", "retention", "--model", "no-such-model",
                        "--answers", str(ANSWERS_FILE)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no-such-model" in r.stderr
