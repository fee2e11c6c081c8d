"""General prompts answered as the base model answers them (self-distillation, retention).

A student trained only on reasoning skills forgets how its base model talks. Mixing in
short general prompts whose completions are the *base model's own* greedy answers
keeps it close (#31), and the held-out prompts measure how close it stayed
(``distill.retention``).

``general_prompts.jsonl`` (shipped, hand-written: facts, definitions, short how-tos,
completions, small language chores) holds 240 prompts ``g001``..``g240``. The split
is a fixed rule on the number, so it never moves when prompts are appended: every
4th prompt (``g004``, ``g008``, ...) is held out (``test``, 60), the rest are ``train``
(180). Since the file lists each kind in a block, each kind is held out by a quarter.

``general_answers.jsonl`` holds the base model's answers, written by
``python -m thinkling.distill general --model gemma-3-270m``. The task has no chains: its
training rows are direct answers, and ``score`` is agreement with the base answer.

Pure Python: the runtime is only imported by ``distill.retention``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from thinkling.bench.tasksets import score as check
from thinkling.distill.tasks.base import Chain, Problem, TaskError

PROMPTS_FILE = Path(__file__).with_name("general_prompts.jsonl")
ANSWERS_FILE = Path(__file__).with_name("general_answers.jsonl")
HELD_OUT_EVERY = 4
SPLITS = ("train", "test")


class AnswersMissing(FileNotFoundError):
    """The base model's answers have not been generated (or lack a prompt)."""

    def __init__(self, path: Path, missing: list[str]):
        self.path, self.missing = path, missing
        what = "does not exist" if not path.exists() else f"has no answer for {', '.join(missing[:5])}"
        super().__init__(f"{path} {what}; run: python -m thinkling.distill general --model gemma-3-270m --out {path}")


@dataclass(frozen=True)
class GeneralPrompt:
    id: str  # "g001"
    kind: str  # fact | def | how | complete | misc
    prompt: str

    @property
    def split(self) -> str:
        return "test" if int(self.id[1:]) % HELD_OUT_EVERY == 0 else "train"


def load_prompts(path: Path = PROMPTS_FILE) -> list[GeneralPrompt]:
    """Every prompt of the file, in file order."""
    with open(path, encoding="utf-8") as f:
        return [GeneralPrompt(**json.loads(line)) for line in f if line.strip()]


def prompts_of(split: str, path: Path = PROMPTS_FILE) -> list[GeneralPrompt]:
    if split not in SPLITS:
        raise TaskError(split, SPLITS, "general split")
    return [p for p in load_prompts(path) if p.split == split]


def load_answers(path: Path = ANSWERS_FILE) -> dict[str, dict]:
    """The stored base answers by prompt id (rows of ``distill.retention.answer_rows``)."""
    if not path.exists():
        raise AnswersMissing(path, [])
    with open(path, encoding="utf-8") as f:
        return {r["id"]: r for r in map(json.loads, filter(str.strip, f))}


class GeneralTask:
    """The ``general`` task: prompts answered directly, the reference being the base
    model's answer (its ``train_answer``: cut at the last full sentence when the
    base ran out of tokens, so the student does not learn to stop mid-sentence)."""

    name = "general"
    check = "exact"
    splits = SPLITS
    paths: tuple[str, ...] = ()

    def __init__(self, prompts: Path = PROMPTS_FILE, answers: Path = ANSWERS_FILE):
        self.prompts_path, self.answers_path = prompts, answers

    def sample(self, split: str, n: int, seed: int) -> list[Problem]:
        """Up to ``n`` prompts of ``split`` (there are 180 train, 60 test), shuffled by
        ``seed``. The id is the prompt's own (``general/test/g004``), whatever the seed."""
        chosen = prompts_of(split, self.prompts_path)
        random.Random(seed).shuffle(chosen)
        chosen = chosen[:n]
        answers = load_answers(self.answers_path)
        missing = [p.id for p in chosen if p.id not in answers]
        if missing:
            raise AnswersMissing(self.answers_path, missing)
        return [Problem(id=f"general/{split}/{p.id}", task=self.name, split=split, level=p.kind,
                        question=p.prompt, answer=answers[p.id]["train_answer"], check=self.check,
                        meta={"prompt_id": p.id, "base_model": answers[p.id]["model"],
                              "base_text": answers[p.id]["text"]})
                for p in chosen]

    def chains(self, problem: Problem, k: int, rng: random.Random) -> list[Chain]:
        return []  # answered directly: there is no reasoning to distill

    def verify(self, problem: Problem, chain: Chain) -> str | None:
        return "general prompts take no chains"

    def score(self, problem: Problem, answer: str) -> bool:
        """Agreement with the base model's answer, as trained or as generated (words,
        case, spacing and trailing punctuation aside: the ``exact`` checker);
        ``distill.retention`` reports the finer measures."""
        row = problem.row()
        return check(row, answer) or check({**row, "answer": problem.meta["base_text"]}, answer)

    def corrupt(self, chain: Chain, rng: random.Random) -> Chain | None:
        return None


TASK = GeneralTask()
