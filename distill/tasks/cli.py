"""``python -m thinkling.distill tasks | data | export``: the task table, training data, bench task files."""

from __future__ import annotations

import argparse
import json
import sys

from thinkling.distill.chat import FORMATS
from thinkling.distill.tasks.dataset import DEFAULT_MODES, DataSpec, export_rows, write_data


def parse_modes(text: str) -> dict[str, float]:
    """``direct=0.3,think=0.55,post=0.15`` -> a dict of weights."""
    try:
        pairs = (item.split("=") for item in text.split(","))
        return {mode.strip(): float(w) for mode, w in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected mode=weight,... (e.g. direct=0.3,think=0.7), got {text!r}") from None


def parse_paths(text: str) -> dict[str, tuple[str, ...]]:
    """``gsm_symbolic=equations,calendar=mod7+weeks`` -> {task: (path, ...)}."""
    try:
        pairs = (item.split("=") for item in text.split(","))
        return {task.strip(): tuple(p.strip() for p in paths.split("+")) for task, paths in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected task=path+path,... (e.g. gsm_symbolic=equations), got {text!r}") from None


def list_tasks(args: argparse.Namespace) -> None:
    from thinkling.distill.tasks import TASKS

    for name, task in TASKS.items():
        splits = ",".join(getattr(task, "splits", ("train", "calib", "test")))
        paths = ",".join(getattr(task, "paths", ()))
        check = getattr(task, "check", "per problem")
        print(f"{name:22} check={check:36} splits={splits:28} paths={paths}")


def data(args: argparse.Namespace) -> None:
    if (args.task is None) == (args.mix is None):
        raise ValueError("give --task (task problems) or --mix (an arithmetic phase mix), not both")
    if args.mix is not None:
        from thinkling.distill.data import write_mix

        report = write_mix(args.mix, args.rows, args.seed, FORMATS[args.chat], args.out)
        print(json.dumps({"out": args.out, **{k: report[k] for k in ("mix", "rows", "rows_by_mode")}}, indent=2))
        return
    spec = DataSpec(tasks=tuple(t.strip() for t in args.task.split(",") if t.strip()), per_task=args.per_task,
                    seed=args.seed, chat=args.chat, k=args.k, mode_weights=args.modes,
                    mistake_rate=args.mistake_rate, truncate_rate=args.truncate_rate, paths=args.paths,
                    chains_files=tuple(args.chains))
    report = write_data(spec, args.out)
    per_task = {n: {k: s[k] for k in ("problems", "written", "kept", "caught", "missed", "false_rejections")}
                for n, s in report["tasks"].items()}
    print(json.dumps({"out": args.out, "rows": report["rows"], "tasks": per_task}, indent=2))


def export(args: argparse.Namespace) -> None:
    from thinkling.bench.files import write_text_atomic

    rows = []
    for name in (t.strip() for t in args.task.split(",") if t.strip()):
        for row in export_rows(name, args.split, args.n, args.seed):
            if args.group == "task":  # one table row per skill in bench modes (the level stays in the id)
                row["group"] = name if args.split != "test-unseen" else f"{name} (unseen)"
            rows.append(row)
    write_text_atomic(args.out, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tasks``, ``data`` and ``export`` commands."""
    p = sub.add_parser("tasks", help="list the distillation tasks, their checkers, splits and teacher paths")
    p.set_defaults(func=list_tasks)

    p = sub.add_parser("data", help="write filtered training data: DIR/train.jsonl and DIR/stats.json")
    p.add_argument("--task", help="comma-separated task names (python -m thinkling.distill tasks)")
    p.add_argument("--mix", help="instead of --task: an arithmetic phase mix of distill.data.MIXES "
                   "(adapter: the arith-student's adapter data; its old build drew it with --seed 1)")
    p.add_argument("--rows", type=int, default=352_000, help="rows of a --mix (default: 11,000 steps of 32)")
    p.add_argument("--per-task", type=int, default=1000, help="train problems per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chat", choices=sorted(FORMATS), default="gemma", help="the student's chat format")
    p.add_argument("--k", type=int, default=3, help="distinct teacher paths per problem")
    p.add_argument("--modes", type=parse_modes, default=dict(DEFAULT_MODES),
                   help="mode weights, e.g. direct=0.3,think=0.55,post=0.15")
    p.add_argument("--mistake-rate", type=float, default=0.15,
                   help="share of chains corrupted before the filter (measures it)")
    p.add_argument("--truncate-rate", type=float, default=0.04,
                   help="share of think rows whose chain is cut, then answered (a reasoning budget)")
    p.add_argument("--paths", type=parse_paths, default={},
                   help="teacher paths to keep per task, e.g. gsm_symbolic=equations,calendar=mod7+weeks")
    p.add_argument("--chains", nargs="*", default=[], metavar="FILE",
                   help="python -m thinkling.distill teach outputs: their kept chains join their problems' (same --seed)")
    p.add_argument("--out", required=True, help="output directory")
    p.set_defaults(func=data)

    p = sub.add_parser("export", help="write a bench task file (question, answer, check, group, metadata)")
    p.add_argument("--task", required=True, help="comma-separated task names; N rows of each")
    p.add_argument("--group", choices=("level", "task"), default="level",
                   help="the rows' group: task/level (default) or the task alone (a table row per skill)")
    p.add_argument("--split", default="test", help="calib, test (gsm_symbolic also test-unseen)")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output .jsonl")
    p.set_defaults(func=export)
