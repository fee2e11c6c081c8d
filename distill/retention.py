"""The base model's answers to the general prompts, and a student's retention of them.

    python -m thinkling.distill general --model gemma-3-270m --out distill/tasks/general_answers.jsonl
    python -m thinkling.distill retention --model skills-student

``general`` runs a model greedily (``think: off``, at most 48 new tokens) on every
prompt of ``distill/tasks/general_prompts.jsonl`` through ``runtime.Engine`` and stores
what it said: the ``general`` task trains on those answers (self-distillation).

``retention`` asks another model (a student of that base) the held-out prompts the
same way and measures agreement with the stored answers: the share answered
identically (``exact``, whitespace aside), the share whose first 16 words are
identical (``prefix``) and the mean share of those 16 words matched before the
first difference (``prefix_share``). Words, not model tokens, so models with
different tokenizers are measured alike.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.distill.tasks.general import ANSWERS_FILE, AnswersMissing, GeneralPrompt, load_answers, load_prompts

MAX_TOKENS = 48
PREFIX_WORDS = 16
# The end of a sentence: where a base answer cut by max_tokens may be cut back to.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")


def train_answer(text: str, finish_reason: str) -> str:
    """The completion a student is trained on: the base's text, cut back to its last
    full sentence when the token cap stopped it (a student trained on half sentences
    followed by end-of-turn learns to stop mid-sentence)."""
    text = text.strip()
    if finish_reason != "length":
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if not _list_number(text, m.start())]
    return text[: ends[-1]].strip() if ends else text


def _list_number(text: str, dot: int) -> bool:
    # "2." opening a numbered line ends no sentence
    line = text[text.rfind("\n", 0, dot) + 1 : dot].strip()
    return line.isdigit()


def greedy_answers(model: str, prompts: list[GeneralPrompt], max_tokens: int = MAX_TOKENS,
                   threads: int = 1) -> list[dict]:
    """One row per prompt: the model's greedy direct answer (``think: off``)."""
    from thinkling.runtime import Engine, EngineConfig
    from thinkling.runtime.types import GenerationRequest, Message, SamplingParams

    rows = []
    with Engine(model, EngineConfig(n_ctx=512, n_threads=threads, queue_size=1)) as eng:
        for p in prompts:
            req = GenerationRequest(messages=[Message("user", p.prompt)], max_tokens=max_tokens,
                                    sampling=SamplingParams(temperature=0.0), think="off")
            r = eng.generate(req)
            rows.append({"id": p.id, "prompt": p.prompt, "model": model, "max_tokens": max_tokens,
                         "text": r.text.strip(), "finish_reason": r.finish_reason,
                         "tokens": r.timings.completion_tokens,
                         "train_answer": train_answer(r.text, r.finish_reason)})
    return rows


def write_answers(model: str, out: Path, max_tokens: int = MAX_TOKENS, threads: int = 1) -> list[dict]:
    """Answer every general prompt with ``model`` and write the JSONL atomically."""
    rows = greedy_answers(model, load_prompts(), max_tokens, threads)
    write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


@dataclass(frozen=True)
class Retention:
    """Agreement of a model's answers with the base's on ``n`` prompts (shares 0..1)."""

    n: int
    exact: float
    prefix: float
    prefix_share: float


def common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def agreement(answers: dict[str, str], base: dict[str, str], prefix_words: int = PREFIX_WORDS) -> Retention:
    """Compare ``answers`` with ``base`` on the ids of ``base`` (a missing answer disagrees)."""
    if not base:
        raise ValueError("no base answers to compare with")
    exact = prefix = share = 0.0
    for pid, want in base.items():
        got_words, want_words = answers.get(pid, "").split(), want.split()
        exact += got_words == want_words
        # a base answer shorter than the window must be matched whole (and no further words asked)
        window = min(prefix_words, len(want_words))
        same = common_prefix(got_words, want_words)
        prefix += same >= window and len(got_words) >= window
        share += min(same, window) / window if window else float(not got_words)
    n = len(base)
    return Retention(n, round(exact / n, 4), round(prefix / n, 4), round(share / n, 4))


def retention(model: str, answers_path: Path = ANSWERS_FILE, split: str = "test", threads: int = 1) -> dict:
    """Ask ``model`` the ``split`` prompts as the base was asked; its agreement with the
    base, and under ``answers`` each prompt's two answers side by side."""
    stored = load_answers(answers_path)
    prompts = [p for p in load_prompts() if p.split == split]
    missing = [p.id for p in prompts if p.id not in stored]
    if missing:
        raise AnswersMissing(answers_path, missing)
    max_tokens = stored[prompts[0].id]["max_tokens"]
    got = {r["id"]: r["text"] for r in greedy_answers(model, prompts, max_tokens, threads)}
    result = agreement(got, {p.id: stored[p.id]["text"] for p in prompts})
    return {"model": model, "base_model": stored[prompts[0].id]["model"], "split": split,
            "max_tokens": max_tokens, **asdict(result),
            "answers": [{"id": p.id, "prompt": p.prompt, "base": stored[p.id]["text"], "model": got[p.id]}
                        for p in prompts]}


# --- CLI ---------------------------------------------------------------------------

def register(sub) -> None:
    """Add ``general`` and ``retention`` to ``python -m thinkling.distill``'s subcommands."""
    g = sub.add_parser("general", help="store a base model's greedy answers to the general prompts")
    g.add_argument("--model", default="gemma-3-270m")
    g.add_argument("--out", type=Path, default=ANSWERS_FILE)
    g.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    g.add_argument("--threads", type=int, default=1)
    g.set_defaults(func=_run_general)
    r = sub.add_parser("retention", help="agreement of a model's greedy answers with the stored base answers")
    r.add_argument("--model", required=True)
    r.add_argument("--answers", type=Path, default=ANSWERS_FILE)
    r.add_argument("--split", default="test", choices=("train", "test"))
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--json", type=Path, default=None, help="also write the result, with every answer, here")
    r.set_defaults(func=_run_retention)


def _run_general(args: argparse.Namespace) -> None:
    rows = write_answers(args.model, args.out, args.max_tokens, args.threads)
    cut = sum(r["finish_reason"] == "length" for r in rows)
    print(f"{len(rows)} answers of {args.model} -> {args.out} ({cut} stopped at {args.max_tokens} tokens)")


def _run_retention(args: argparse.Namespace) -> None:
    result = retention(args.model, args.answers, args.split, args.threads)
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "answers"}, indent=1))
