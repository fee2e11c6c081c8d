"""One evaluator for any task mix: a student through the runtime, scored by the shared checker.

    python -m thinkling.distill evaluate --model skills-student \
        --tasks arith.jsonl,calendar.jsonl --out distill/artifacts/<student>/eval.json [--limit N]

Every task row (``bench.tasksets``: ``question``, ``answer``, ``check``, ``group``) is
asked greedily in each mode (``off``, ``on``, ``post`` by default) through the engine on
the model's GGUF, with ``bench.modes.run_mode`` (the loop ``bench modes`` uses), and
scored with ``bench.tasksets.score``. The records hold every query's outcome and, per
task (skill), per group (``task/level``) and overall: per-mode accuracy, mean tokens and
mean latency, the share of direct answers that are right, and ``on`` minus ``off``
(does the chain help?). ``records_from_answers`` aggregates answers produced elsewhere
(a trainer's own generate) the same way. No torch.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.bench.fingerprint import load_average
from thinkling.bench.modes import run_mode, take
from thinkling.bench.tasksets import load_tasks, score
from thinkling.distill import cli
from thinkling.runtime import Engine, EngineConfig
from thinkling.runtime.hardware import device_facts

MODES = ("off", "on", "post")
RECORD_KIND = "thinkling-eval/1"


@dataclass
class EvalOptions:
    """How the tasks are run. ``limit`` applies to each task file (stratified by group)."""

    modes: tuple[str, ...] = MODES
    max_tokens: int = 256  # per generation, reasoning included
    limit: int | None = None
    threads: int | None = None  # llama.cpp threads (None: the engine's default)
    n_ctx: int = 1024


def task_of(row: Mapping) -> str:
    """The skill a row belongs to: its ``task`` field, else the ``task/level`` group's first
    part, else the file it came from (a built-in set such as ``arith-test``)."""
    if row.get("task"):
        return str(row["task"])
    group = str(row.get("group", ""))
    if "/" in group:
        return group.split("/", 1)[0]
    return Path(str(row.get("source", "all"))).stem


def load_mix(specs: Sequence[str], limit: int | None = None) -> list[dict]:
    """The rows of every task set in ``specs`` (each cut to ``limit``, the groups taken in
    turn), each tagged with its ``source``. Raises ``TaskSetError`` for a bad set."""
    return [{**row, "source": spec} for spec in specs for row in take(load_tasks(spec), limit)]


def evaluate(model: str, tasks: Sequence[str], opts: EvalOptions | None = None) -> dict:
    """Run every task of ``tasks`` in every mode on ``model``; return the records."""
    opts = opts or EvalOptions()
    rows = load_mix(tasks, opts.limit)  # a bad task file fails before the model loads
    return evaluate_rows(model, rows, opts, tasks=list(tasks))


def evaluate_rows(model: str, rows: list[dict], opts: EvalOptions | None = None,
                  tasks: list[str] | None = None) -> dict:
    """The records of ``rows`` (already loaded) on ``model`` through the engine."""
    opts = opts or EvalOptions()
    facts, load = device_facts(), load_average()
    with Engine(model, EngineConfig(n_ctx=opts.n_ctx, n_threads=opts.threads, queue_size=1)) as eng:
        info = eng.info()
        run_mode(eng, rows[:1], "off", 4)  # warm-up: the first query pays for the first graph
        outcomes = {m: run_mode(eng, rows, m, opts.max_tokens) for m in opts.modes}
    per_query = [_query_record(row, {m: outcomes[m][i] for m in opts.modes}) for i, row in enumerate(rows)]
    rec = {
        "kind": RECORD_KIND,
        "model": info.name, "model_file": Path(info.path).name,
        "tasks": tasks if tasks is not None else sorted({r.get("source", "?") for r in rows}),
        "n": len(rows), "modes": list(opts.modes), "max_tokens": opts.max_tokens, "limit": opts.limit,
        "decoding": "greedy", "model_format": info.format,  # gguf: llama.cpp; onnx: onnxruntime
        "recorded": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": facts["cpu"], "cores": facts["physical_cores"], "threads": opts.threads,
                    "load_at_start": load, "load_at_end": load_average()},
    }
    return {**rec, **aggregate(per_query, opts.modes), "per_query": per_query}


def write_records(rec: dict, path: str | Path) -> None:
    """Write the records as JSON, whole (temp name, then rename)."""
    write_text_atomic(path, json.dumps(rec, indent=1, ensure_ascii=False) + "\n")


def _query_record(row: dict, outs: Mapping) -> dict:
    """One task's outcomes in every mode (answer, right, tokens, latency)."""
    return {
        "source": row.get("source"), "task": task_of(row), "group": row["group"],
        "question": row["question"], "label": row["answer"], "check": row["check"],
        "modes": {m: {"answer": o.answer, "correct": o.correct, "tokens": o.tokens,
                      "latency_ms": round(o.latency_ms, 2), "reasoning_chars": o.reasoning_chars,
                      "thought": o.thought}
                  for m, o in outs.items()},
    }


def records_from_answers(rows: list[dict], answers: Mapping[str, Sequence[str]]) -> dict:
    """Per-task and per-group accuracy of answers produced elsewhere.

    The in-training hook: a trainer generates with its own model (``answers[mode][i]``
    answers ``rows[i]``; the answer text after any reasoning) and gets the same
    tables as ``evaluate``, scored by the same checker; tokens and latency are absent.
    """
    per_query = [{"source": r.get("source"), "task": task_of(r), "group": r["group"], "question": r["question"],
                  "label": r["answer"], "check": r["check"],
                  "modes": {m: {"answer": answers[m][i], "correct": score(r, answers[m][i])} for m in answers}}
                 for i, r in enumerate(rows)]
    return {"kind": RECORD_KIND, "n": len(rows), "modes": list(answers),
            **aggregate(per_query, tuple(answers)), "per_query": per_query}


def aggregate(per_query: list[dict], modes: Sequence[str]) -> dict:
    """``overall``, ``by_task``, ``by_group`` and ``by_source`` summaries of per-query records."""
    def table(key) -> dict:
        groups: dict[str, list[dict]] = {}
        for q in per_query:
            groups.setdefault(key(q), []).append(q)
        return {k: summarize(v, modes) for k, v in sorted(groups.items())}

    # by_source: one line per task file, so a split kept in its own file (gsm_symbolic's
    # unseen templates) stands beside the seen one even where task and groups are shared
    return {"overall": summarize(per_query, modes), "by_task": table(lambda q: q["task"]),
            "by_group": table(lambda q: q["group"]), "by_source": table(lambda q: str(q.get("source") or "-"))}


def summarize(queries: list[dict], modes: Sequence[str]) -> dict:
    """Per mode: accuracy, mean tokens, mean latency and the share of queries that reasoned
    (where measured); then the share of direct answers right and ``on`` minus ``off`` in
    points (where both modes ran)."""
    out: dict = {"n": len(queries), "modes": {}}
    for m in modes:
        runs = [q["modes"][m] for q in queries]
        row = {"accuracy": sum(r["correct"] for r in runs) / len(runs)}
        for field, name in (("tokens", "mean_tokens"), ("latency_ms", "mean_latency_ms"), ("thought", "think_rate")):
            if all(field in r for r in runs):
                row[name] = round(statistics.fmean(r[field] for r in runs), 4)
        out["modes"][m] = row
    if "off" in modes:
        out["direct_right"] = out["modes"]["off"]["accuracy"]
    if "off" in modes and "on" in modes:
        gain = 100 * (out["modes"]["on"]["accuracy"] - out["modes"]["off"]["accuracy"])
        out["on_minus_off_points"] = round(gain, 2)
        out["chain_helps"] = gain > 0
    return out


def format_summary(rec: dict) -> str:
    """A plain-text table: one line per task and per group, accuracy per mode."""
    modes = rec["modes"]
    head = f"{'':<32}{'n':>5}" + "".join(f"{m:>8}" for m in modes) + f"{'on-off':>9}"
    lines = [head, "-" * len(head)]
    for title, table in (("task", rec["by_task"]), ("group", rec["by_group"]), ("", {"all": rec["overall"]})):
        for name, s in table.items():
            cells = "".join(f"{100 * s['modes'][m]['accuracy']:>7.1f}%" for m in modes)
            gain = f"{s['on_minus_off_points']:>+9.1f}" if "on_minus_off_points" in s else ""
            label = f"{title} {name}".strip()
            lines.append(f"{label[:31]:<32}{s['n']:>5}{cells}{gain}")
    return "\n".join(lines)


def records_from_modes(result: Mapping, rows: list[dict]) -> dict:
    """The records of a ``bench modes`` result (its per-query outcomes, in ``rows``' order):
    the same tables as ``evaluate`` without running the model a second time."""
    from thinkling.bench.modes import Outcome

    modes = tuple(m for m in MODES if m in result["per_query"])
    outcomes = {m: [Outcome(**o) for o in result["per_query"][m]] for m in modes}
    if any(len(v) != len(rows) for v in outcomes.values()):
        raise ValueError(f"the bench modes result has {len(next(iter(outcomes.values())))} queries per mode, "
                         f"the task set {len(rows)}")
    per_query = [_query_record(row, {m: outcomes[m][i] for m in modes}) for i, row in enumerate(rows)]
    rec = {"kind": RECORD_KIND, "model": result["model"], "tasks": [result["tasks"]], "n": len(rows),
           "modes": list(modes), "decoding": "greedy", "from_bench_modes": result.get("via", "")}
    return {**rec, **aggregate(per_query, modes), "per_query": per_query}


def register(sub) -> None:
    """``python -m thinkling.distill evaluate``."""
    p = sub.add_parser("evaluate", help="accuracy per skill, group and mode through the runtime",
                       description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a registered name or a GGUF path")
    p.add_argument("--tasks", required=True, help="task sets, comma-separated: JSONL files, built-in "
                                                  "names (arith-test) or rg:<dataset>?seed=..&n=..")
    p.add_argument("--out", required=True, help="the records (JSON, written whole)")
    p.add_argument("--limit", type=int, default=None, help="use only N tasks of each set (its groups in turn)")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated: off, on, post, auto")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--from-modes", default=None, metavar="FILE",
                   help="build the records from a bench modes JSON on --tasks instead of running the model")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> None:
    """Run, write the records, print the table (errors raise; ``distill.cli`` prints them)."""
    modes = tuple(m for m in args.modes.split(",") if m)
    bad = [m for m in modes if m not in ("off", "on", "post", "auto")]
    if bad or not modes:
        raise ValueError(f"--modes: unknown mode(s) {', '.join(bad) or '(none)'} (off, on, post, auto)")
    opts = EvalOptions(modes=modes, max_tokens=args.max_tokens, limit=args.limit, threads=args.threads)
    specs = [t for t in args.tasks.split(",") if t]
    if args.from_modes:
        rec = records_from_modes(json.loads(Path(args.from_modes).read_text()), load_mix(specs))
    else:
        rec = evaluate(args.model, specs, opts)
    write_records(rec, args.out)
    print(format_summary(rec))


def main(argv: list[str] | None = None) -> int:
    """``python -m thinkling.distill.evaluate`` (the same as ``python -m thinkling.distill evaluate``)."""
    return cli.command_main("evaluate", argv)


if __name__ == "__main__":
    sys.exit(main())
