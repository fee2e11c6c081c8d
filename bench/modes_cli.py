"""`bench modes` command line (the library is bench/modes.py)."""

from __future__ import annotations

import argparse

from thinkling.runtime.extras import require

from .modes import RunOptions, bench_modes, table


def register(sub) -> None:
    p = sub.add_parser("modes", help="accuracy/latency of each thinking mode on a labelled task set")
    p.add_argument("--model", required=True)
    p.add_argument("--tasks", default="arith-test",
                   help="JSONL {question, answer, check, group}, a built-in set name or rg:<dataset>?seed=S&n=N")
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="use only N tasks (the first of each group in turn)")
    p.add_argument("--repeats", type=int, default=5,
                   help="runs per query and mode (paired, rotated order); latency is the per-query median")
    p.add_argument("--url", default=None,
                   help="a running thinkling serve (http://127.0.0.1:8080): every query goes over HTTP")
    p.add_argument("--profile", default=None,
                   help="thinking profile JSON for auto (in process; default: the one beside the model)")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--plot", default=None)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    if args.plot:  # fail before the benchmark, not after it
        require("bench modes --plot", "bench", "matplotlib")
    opts = RunOptions(max_tokens=args.max_tokens, threads=args.threads, limit=args.limit,
                      repeats=max(1, args.repeats), url=args.url, profile=args.profile)
    r = bench_modes(args.model, args.tasks, opts, args.json_out, args.plot)
    print(table(r["rows"]))
    print(group_lines(r["groups"]))
    print(f"auto - on accuracy: {r['auto_vs_on_accuracy_points']:+.1f} points; auto - random gating: "
          f"{r['auto_vs_random_accuracy_points']:+.1f} points; oracle savings captured by auto: "
          + _pct(r["oracle_savings_captured"]))
    print(f"within reach (direct answer right): {r['within_reach_share_of_on'] * 100:.0f}% of on's time, "
          f"auto saved {_pct(r['savings_within_reach'])} of it; the oracle's savings where both modes are wrong "
          f"({r['out_of_reach_oracle_share_of_on'] * 100:.0f}% of on's time) are out of any controller's reach")
    direct = r["auto_answered_directly"]
    if direct["n"]:
        print(f"auto answered {direct['n']} of {r['n']} directly: {direct['accuracy'] * 100:.0f}% correct, "
              f"median {direct['median_latency_ms']:.0f} ms, p95 {direct['p95_latency_ms']:.0f} ms end to end")
    d = r["auto_minus_on_latency"]
    print(f"auto - on mean latency, paired per query: {d['mean_ms']:+.2f} ms ({d['share_of_a'] * 100:+.1f}%), "
          f"95% interval {d['ci95_ms'][0]:+.2f} .. {d['ci95_ms'][1]:+.2f} ms")
    print(f"latency: per-query median of {r['repeats']} paired runs; random@rate and oracle rows are "
          "computed from the measured per-query off/on runs.")
    if r["answers_changed_between_repeats"]:
        print(f"note: {r['answers_changed_between_repeats']} (query, mode) answers differed between repeats; "
              "the first pass's answer is scored.")
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


def group_lines(groups: dict[str, dict]) -> str:
    """The per-group table: accuracy per mode, then what is within reach of ``auto``."""
    modes = list(next(iter(groups.values()))["accuracy"])
    width = max(8, *(len(g) + 2 for g in groups))
    head = f"{'group':<{width}}{'n':>5}" + "".join(f"{m:>7}" for m in modes) + \
        f"{'on tok':>8}{'reach':>7}{'auto got':>9}"
    lines = [head, "-" * len(head)]
    for g, row in groups.items():
        lines.append(f"{g:<{width}}{row['n']:>5}" + "".join(f"{row['accuracy'][m] * 100:>6.0f}%" for m in modes)
                     + f"{row.get('mean_on_tokens', float('nan')):>8.1f}"
                     + f"{row.get('within_reach_share_of_on', float('nan')) * 100:>6.0f}%"
                     + f"{_pct(row.get('savings_within_reach')):>9}")
    lines.append("(accuracy per mode; off is the direct-right rate; reach: share of on's time saved by "
                 "answering directly where that is right; auto got: the share of it auto saved)")
    return "\n".join(lines)
