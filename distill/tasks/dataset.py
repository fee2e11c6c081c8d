"""Training data on disk: task problems -> teacher chains -> noise -> filter -> JSONL.

For each task, ``per_task`` train problems are sampled; the teacher writes up
to ``k`` distinct paths per problem; a share of the chains is corrupted (the
noisy teacher of a real pipeline, and the way the filter's recall is measured);
every chain goes through the task's filter, and each kept chain becomes one row
in a mode drawn from ``mode_weights``, rendered in the student's chat format.
A problem gives at most one ``direct`` row (its chains all answer the same). A few
``think`` rows are cut (path ``<path>/cut``): the chain stops anywhere, then the answer.

``DIR/train.jsonl`` rows: ``prompt, completion, mode, task, level, path, id``;
``DIR/stats.json``: the spec and, per task, what the filter did.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from thinkling.distill.chat import FORMATS
from thinkling.distill.tasks import get_task
from thinkling.distill.tasks.base import Chain, Problem, Task, TaskError

_ALL_PATHS = 64  # ask a teacher for every path it has, then keep the spec's first k
DEFAULT_MODES = {"direct": 0.3, "think": 0.55, "post": 0.15}


@dataclass(frozen=True)
class DataSpec:
    """What a data set is made of; the ``data`` command's flags, one for one."""

    tasks: tuple[str, ...]
    per_task: int = 1000
    seed: int = 0
    chat: str = "gemma"
    k: int = 3  # distinct teacher paths per problem
    mode_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MODES))
    mistake_rate: float = 0.15  # share of chains the noisy teacher corrupts before the filter
    # share of 'think' rows whose chain is cut anywhere and closed, then answered: what the
    # runtime's reasoning budget does, so a force-closed chain is still followed by the answer
    truncate_rate: float = 0.04
    # per task, the teacher paths to keep (e.g. {"gsm_symbolic": ("equations",)}); others keep all
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # ``python -m thinkling.distill teach`` outputs: their kept chains join their problems' (same seed
    # and split as the teach run), first, as path "teacher"
    chains_files: tuple[str, ...] = ()
    split: str = "train"


@dataclass
class FilterStats:
    """What the filter did on one task's chains (``injected`` = corrupted by the noise)."""

    problems: int = 0
    written: int = 0
    kept: int = 0
    injected: int = 0
    caught: int = 0  # injected and rejected
    missed: int = 0  # injected and kept: they are in the data, as in a real pipeline
    false_rejections: int = 0  # clean teacher chains the filter rejected
    rejected_by_reason: Counter = field(default_factory=Counter)
    rows_by_mode: Counter = field(default_factory=Counter)
    rows_by_path: Counter = field(default_factory=Counter)
    rows_by_level: Counter = field(default_factory=Counter)


def reason_kind(reason: str) -> str:
    """A reject reason without its specifics: 'wrong step 3: 2 + 2 = 5' -> 'wrong step N'."""
    return re.sub(r"\d+", "N", reason.partition(":")[0])


def judge(task: Task, problem: Problem, chain: Chain, rng: random.Random, mistake_rate: float,
          stats: FilterStats) -> Chain | None:
    """The chain, maybe corrupted, if the filter keeps it; counts what happened."""
    injected = False
    if rng.random() < mistake_rate:
        bad = task.corrupt(chain, rng)
        if bad is not None and bad != chain:
            chain, injected = bad, True
    why = task.verify(problem, chain)
    stats.written += 1
    stats.injected += injected
    if why is None:
        stats.kept += 1
        stats.missed += injected
        return chain
    stats.rejected_by_reason[reason_kind(why)] += 1
    stats.caught += injected
    stats.false_rejections += not injected
    return None


def task_rows(task: Task, spec: DataSpec, stats: FilterStats) -> list[dict]:
    """The kept rows of one task, in order of its problems."""
    fmt = FORMATS[spec.chat]
    rng = random.Random(f"{task.name}/{spec.seed}")
    modes, weights = list(spec.mode_weights), list(spec.mode_weights.values())
    rows = []
    teacher = _teacher_chains(spec, task.name)
    for problem in task.sample(spec.split, spec.per_task, spec.seed):
        stats.problems += 1
        direct_done = False
        chains = _distinct(teacher.get(problem.id, []) + task.chains(problem, _ALL_PATHS, rng))
        if task.name in spec.paths:
            chains = [c for c in chains if c.path in spec.paths[task.name]]
        if not chains and not getattr(task, "paths", ()):
            # a task without reasoning (general prompts): its reference answer, direct
            rows.append(_row(fmt, problem, "direct", "", problem.answer, "direct"))
            stats.rows_by_mode["direct"] += 1
            stats.rows_by_level[problem.level] += 1
            continue
        for chain in chains[: spec.k]:
            mode = rng.choices(modes, weights=weights)[0]
            kept = judge(task, problem, chain, rng, spec.mistake_rate, stats)
            if kept is None or (mode == "direct" and direct_done):
                continue
            direct_done |= mode == "direct"
            steps, path = ("" if mode == "direct" else kept.text), kept.path
            if mode == "think" and spec.truncate_rate and rng.random() < spec.truncate_rate:
                steps, path = steps[: rng.randrange(len(steps))], f"{path}/cut"
            rows.append(_row(fmt, problem, mode, steps, kept.answer, path))
            stats.rows_by_mode[mode] += 1
            stats.rows_by_path[path] += 1
            stats.rows_by_level[problem.level] += 1
    return rows


def _row(fmt, problem: Problem, mode: str, steps: str, answer: str, path: str) -> dict:
    return {"prompt": fmt.render_prompt(problem.question, mode),
            "completion": fmt.render_completion(answer, steps, mode),
            "mode": mode, "task": problem.task, "level": problem.level, "path": path, "id": problem.id}


def _distinct(chains: list[Chain]) -> list[Chain]:
    seen: set[tuple[str, ...]] = set()
    return [c for c in chains if tuple(c.steps) not in seen and not seen.add(tuple(c.steps))]


def _teacher_chains(spec: DataSpec, task: str) -> dict[str, list[Chain]]:
    if not spec.chains_files:
        return {}
    from thinkling.distill.teach import load_teacher_chains  # it imports this module

    return load_teacher_chains(spec.chains_files, task)


def check_spec(spec: DataSpec) -> list[Task]:
    """The spec's tasks; a TaskError or ValueError names what is wrong."""
    if spec.chat not in FORMATS:
        raise TaskError(spec.chat, tuple(FORMATS), what="chat format")
    bad = [m for m in spec.mode_weights if m not in DEFAULT_MODES]
    if bad or not spec.mode_weights or min(spec.mode_weights.values()) < 0 or sum(spec.mode_weights.values()) <= 0:
        raise ValueError(f"mode weights must be non-negative weights of {', '.join(DEFAULT_MODES)}")
    if spec.per_task < 1 or spec.k < 1 or not 0 <= spec.mistake_rate <= 1 or not 0 <= spec.truncate_rate <= 1:
        raise ValueError("per_task and k must be at least 1, mistake_rate and truncate_rate in 0..1")
    tasks = [get_task(name) for name in spec.tasks]
    for name, paths in spec.paths.items():
        known = (*getattr(get_task(name), "paths", ()), *(("teacher",) if spec.chains_files else ()))
        if name not in spec.tasks or any(p not in known for p in paths):
            raise ValueError(f"--paths {name}: a task of this run with paths among {', '.join(known)}")
    return tasks


def make_data(spec: DataSpec) -> tuple[list[dict], dict[str, FilterStats]]:
    """Every task's rows, shuffled together (reproducible from the seed), and the filter stats."""
    tasks = check_spec(spec)
    rows, stats = [], {}
    for task in tasks:
        stats[task.name] = FilterStats()
        rows += task_rows(task, spec, stats[task.name])
    random.Random(spec.seed).shuffle(rows)
    return rows, stats


def write_data(spec: DataSpec, out: str | Path) -> dict:
    """Write ``out/train.jsonl`` and ``out/stats.json`` atomically; returns the stats."""
    from thinkling.bench.files import write_text_atomic

    rows, stats = make_data(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{spec.split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    report = {"spec": asdict(spec), "rows": len(rows), "tasks": {n: _stats_dict(s) for n, s in stats.items()}}
    write_text_atomic(out / "stats.json", json.dumps(report, indent=2) + "\n")
    return report


def _stats_dict(s: FilterStats) -> dict:
    # not asdict(): it rebuilds a Counter from its (key, count) pairs, counting the pairs
    d = {f.name: dict(v) if isinstance(v := getattr(s, f.name), Counter) else v for f in fields(s)}
    d["recall"] = s.caught / s.injected if s.injected else None
    d["precision"] = s.caught / (s.caught + s.false_rejections) if s.caught + s.false_rejections else None
    return d


def export_rows(task_name: str, split: str, n: int, seed: int) -> list[dict]:
    """A bench task file's rows (question, answer, check, group, metadata, id) for ``split``."""
    return [p.row() for p in get_task(task_name).sample(split, n, seed)]
