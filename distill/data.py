"""Training data: noisy teacher -> filter -> (prompt, completion) pairs.

Only chains that pass the filter are kept, as in a real distillation pipeline
where the teacher is a larger model that sometimes errs. Problems come from the
'train' side of the hash split only; evaluation uses the 'eval' side.

Pure Python on purpose: CI runs these tests without torch.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from thinkling.distill.chat import ARITH_FORMAT, EOS, THINK_CLOSE, THINK_OPEN, ChatFormat, render_completion, split_completion
from thinkling.distill.filter import verify_completion
from thinkling.distill.noise import MISTAKES, inject
from thinkling.distill.problems import Problem, sample_split_problem
from thinkling.distill.teacher import FULLY_SPLIT, Strategy, solve, steps_text, teach


@dataclass(frozen=True)
class Mix:
    """What a training set is made of."""

    op_weights: tuple[float, float, float, float]  # problems with 1, 2, 3, 4 operations
    mode_weights: dict[str, float]  # 'direct' / 'think' / 'post'
    truncate_rate: float = 0.0  # share of 'think' examples whose chain is cut, then answered
    question_rate: float = 0.3  # share phrased "What is ...?" instead of the bare expression
    preferred_rate: float = 0.6  # share on the preferred path; the rest pick any path
    preferred: Strategy = FULLY_SPLIT
    mistake_rate: float = 0.15  # the noisy teacher's error rate before filtering


# The base is mostly one-operation problems: direct answers to longer ones are
# near-unlearnable for a model this size and only add gradient noise.
BASE_MIX = Mix(op_weights=(0.7, 0.1, 0.1, 0.1), mode_weights={"direct": 1.0})
ADAPTER_MIX = Mix(
    op_weights=(0.25, 0.2, 0.25, 0.3),
    mode_weights={"direct": 0.3, "think": 0.55, "post": 0.15},
    truncate_rate=0.06,
    # Mostly the canonical precedence path: one 'a op b = c' line per operation, so a
    # one-operation chain is the direct answer written out and chains stay short (errors
    # compound per line). The rest spread over every path the teacher writes.
    preferred_rate=0.8,
    preferred=Strategy(),
)
# Gemma 3 270M: a pretrained model whose one-shot two-digit arithmetic is weak (9 + 99 -> 198
# after a first LoRA probe), so its chains take the fully split path, where every step
# touches one digit (7 * 40, 280 + 50, 330 + 6), and follow it consistently. Direct answers
# get a large share: the better they are, the more `auto` can skip reasoning.
GEMMA_MIX = Mix(
    op_weights=(0.3, 0.2, 0.25, 0.25),
    mode_weights={"direct": 0.35, "think": 0.5, "post": 0.15},
    truncate_rate=0.04,
    preferred_rate=0.85,
    preferred=FULLY_SPLIT,
)
# A second phase from a GEMMA_MIX adapter: after 750 steps the chains were right far more
# often than the direct answers (one-operation direct 40%), and the gate can only skip a
# chain where the direct answer is right. More one-operation problems and more direct
# answers; chains keep half the data so they are not forgotten.
GEMMA_POLISH_MIX = replace(
    GEMMA_MIX,
    op_weights=(0.4, 0.2, 0.2, 0.2),
    mode_weights={"direct": 0.45, "think": 0.45, "post": 0.1},
)
# The phase mixes by name: `python -m thinkling.distill data --mix NAME` writes one to disk.
MIXES = {"base": BASE_MIX, "adapter": ADAPTER_MIX, "gemma": GEMMA_MIX, "gemma-polish": GEMMA_POLISH_MIX}


@dataclass(frozen=True)
class Example:
    prompt: str
    completion: str
    n_ops: int
    mode: str


@dataclass
class DataStats:
    """What the filter did while a data set was made."""

    written: int = 0
    kept: int = 0
    rejected_by_mistake: Counter = field(default_factory=Counter)
    missed_by_mistake: Counter = field(default_factory=Counter)
    false_rejections: int = 0


def question(rng: random.Random, expression: str, question_rate: float) -> str:
    """The user message: the bare expression or ``What is ...?``."""
    return f"What is {expression}?" if rng.random() < question_rate else expression


def _truncate(rng: random.Random, completion: str) -> str:
    # As if the runtime force-closed the chain at a token budget: cut anywhere
    # inside the reasoning, then '</think>' and the right answer.
    reasoning, _, answer = completion[len(THINK_OPEN) :].partition(THINK_CLOSE)
    cut = reasoning[: rng.randrange(len(reasoning))]
    return f"{THINK_OPEN}{cut}{THINK_CLOSE}{answer}"


def _write(rng: random.Random, problem: Problem, mode: str, mix: Mix) -> tuple[str, str | None]:
    """The noisy teacher's completion and the mistake injected into it (None if clean)."""
    if mode == "direct":
        steps, answer = [], problem.value  # no paths needed; saves most of the teacher's time
    elif rng.random() < mix.preferred_rate:
        steps, answer = solve(problem, mix.preferred), problem.value
    else:
        solution = teach(problem)
        steps, answer = list(rng.choice(solution.paths)), solution.answer
    mistake = None
    if rng.random() < mix.mistake_rate:
        mistake = "wrong_final" if mode == "direct" else rng.choice(MISTAKES)
        injected = inject(rng, steps, answer, mistake)
        if injected is None:
            mistake = "wrong_final"
            injected = inject(rng, steps, answer, mistake)
        steps, answer = injected
    return render_completion(str(answer), steps_text(steps), mode), mistake


def sample_example(rng: random.Random, mix: Mix, stats: DataStats,
                   fmt: ChatFormat = ARITH_FORMAT) -> Example | None:
    """One filtered example, or None when the filter rejected what the teacher wrote.

    The teacher writes and the filter checks in the task's canonical format; the
    kept example is then written in ``fmt``, the student's own chat format.
    """
    n_ops = rng.choices((1, 2, 3, 4), weights=mix.op_weights)[0]
    mode = rng.choices(list(mix.mode_weights), weights=list(mix.mode_weights.values()))[0]
    problem = sample_split_problem(rng, n_ops, "train")
    completion, mistake = _write(rng, problem, mode, mix)
    ok = verify_completion(problem, completion, mode).ok
    stats.written += 1
    if mistake is not None:
        (stats.missed_by_mistake if ok else stats.rejected_by_mistake)[mistake] += 1
    elif not ok:
        stats.false_rejections += 1
    if not ok:
        return None
    stats.kept += 1
    if mode == "think" and rng.random() < mix.truncate_rate:
        completion = _truncate(rng, completion)
    prompt = fmt.render_prompt(question(rng, problem.text, mix.question_rate), mode)
    assert completion.endswith(EOS)
    if fmt is not ARITH_FORMAT:
        reasoning, answer = split_completion(completion, mode)
        completion = fmt.render_completion(answer, reasoning, mode)
    return Example(prompt, completion, n_ops, mode)


def make_dataset(seed: int, mix: Mix, n: int,
                 fmt: ChatFormat = ARITH_FORMAT) -> tuple[list[Example], DataStats]:
    """``n`` filtered examples in ``fmt``, reproducible from ``seed``."""
    rng = random.Random(seed)
    stats = DataStats()
    examples: list[Example] = []
    while len(examples) < n:
        ex = sample_example(rng, mix, stats, fmt)
        if ex is not None:
            examples.append(ex)
    return examples, stats


def write_mix(name: str, rows: int, seed: int, fmt: ChatFormat, out: str | Path) -> dict:
    """``out/train.jsonl`` + ``out/stats.json`` of the phase mix ``name``, written atomically.

    The rows are ``make_dataset(seed, MIXES[name], rows, fmt)``'s examples in order, as the
    old in-memory build fed them to its loop, in the task pipeline's row shape, so
    ``python -m thinkling.distill train`` reads them like any task's data.
    """
    from thinkling.bench.files import write_text_atomic
    from thinkling.distill.card_arith import stats_dict  # it imports this module

    if name not in MIXES:
        raise ValueError(f"unknown mix {name!r}; known: {', '.join(MIXES)}")
    if rows < 1:
        raise ValueError("--rows must be at least 1")
    examples, stats = make_dataset(seed, MIXES[name], rows, fmt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps({"prompt": ex.prompt, "completion": ex.completion, "mode": ex.mode, "task": "arithmetic",
                         "level": f"{ex.n_ops} ops", "path": f"mix:{name}", "id": f"mix:{name}/{seed}/{i}"},
                        ensure_ascii=False) + "\n" for i, ex in enumerate(examples))
    write_text_atomic(out / "train.jsonl", "".join(lines))
    report = {"mix": name, "seed": seed, "chat": fmt.name, "rows": len(examples),
              "rows_by_mode": dict(Counter(ex.mode for ex in examples)),
              "filter": stats_dict(stats)}
    write_text_atomic(out / "stats.json", json.dumps(report, indent=2) + "\n")
    return report
