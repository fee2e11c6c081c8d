"""`bench tasks` command line (the library is bench/tasksets.py): freeze a task set to a file."""

from __future__ import annotations

import argparse
import collections

from .tasksets import load_tasks, write_tasks


def register(sub) -> None:
    p = sub.add_parser("tasks", help="labelled task sets: generate and freeze one to JSONL")
    tsub = p.add_subparsers(dest="tasks_command", required=True)
    make = tsub.add_parser("make", help="write a task set (a generated rg:<dataset>?seed=S&n=N set, a built-in "
                                        "name or a file) as JSONL, each row with its check and group")
    make.add_argument("spec", help="e.g. 'rg:calendar_arithmetic?seed=7&n=100&tasks=weekday_offset'")
    make.add_argument("--out", required=True, help="JSONL file to write (temp name, then rename)")
    make.set_defaults(func=_make)


def _make(args: argparse.Namespace) -> int:
    rows = load_tasks(args.spec)
    write_tasks(rows, args.out)
    groups = collections.Counter(r["group"] for r in rows)
    print(f"wrote {len(rows)} tasks to {args.out}: " + ", ".join(f"{g} {n}" for g, n in groups.items()))
    return 0
