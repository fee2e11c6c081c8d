"""``bench soak``: flags -> ``SoakOptions`` -> ``soak()``; prints the tables, writes JSON + PNG.

Exit status: 0 when the verdict passes, 1 when it fails (any 5xx or connection
failure, RSS growth past the bound, an unhealthy end, a contended request too
slow, or /metrics disagreeing with the clients).
"""

from __future__ import annotations

import json

from .contend import BUSY_KINDS
from .files import write_text_atomic
from .soak import SoakOptions, soak
from .soak_report import plot, verdict


def register(sub) -> None:
    d = SoakOptions()
    p = sub.add_parser("soak", help="mixed traffic against a server for a set time; memory, errors, latency",
                       description="Drive `thinkling serve` (started on loopback, or --url) with a seeded mix: "
                                   "chat and completions, streaming or not, every think mode, reasoning budgets, "
                                   "expiring deadlines, disconnects, cancels, bursts past the queue, hostile "
                                   "bodies. Exit 1 on any 5xx, RSS growth past the bound, or an unhealthy end.")
    p.add_argument("--url", default=None, help="a running server on loopback (default: start thinkling serve)")
    p.add_argument("--pid", type=int, default=None, help="its process id (default: whoever listens on its port)")
    p.add_argument("--model", default=None, help="model for the server this starts")
    p.add_argument("--dialect", choices=("thinkling", "openai"), default=d.dialect,
                   help="openai: only plain OpenAI-compatible fields (for llama-server)")
    p.add_argument("--duration", dest="duration_s", type=float, default=d.duration_s, help="seconds per phase")
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--contend", type=int, default=d.contend,
                   help="N busy processes beside a second phase of the same length (0: none)")
    p.add_argument("--busy-kind", choices=BUSY_KINDS, default=d.busy_kind,
                   help="python: interpreter loops; spin: each pinned to one core; blas: numpy BLAS threads; "
                        "torch: 2 torch threads (e.g. --contend 1 --busy-kind spin "
                        "--server-arg=--thread-policy=fixed)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--burst-size", type=int, default=d.burst_size)
    p.add_argument("--request-timeout", dest="request_timeout_s", type=float, default=d.request_timeout_s)
    p.add_argument("--max-requests", type=int, default=d.max_requests, help="per phase")
    p.add_argument("--warmup", dest="warmup_s", type=float, default=None,
                   help="seconds before RSS growth is measured (default min(60, duration/4))")
    p.add_argument("--rss-bound-mb", type=float, default=d.rss_bound_mb)
    p.add_argument("--api-key", default=None)
    p.add_argument("--server-arg", dest="server_args", action="append", default=[],
                   help="extra `thinkling serve` flag (repeatable, e.g. --server-arg=--thread-policy=adaptive)")
    p.add_argument("--server-log", dest="log_path", default=None,
                   help="where the started server writes its log (default: a file in the temp dir)")
    p.add_argument("--json", dest="json_out", default=None)
    p.add_argument("--png", dest="png_out", default=None)
    p.set_defaults(func=_main)


def _table(record: dict) -> str:
    lines = []
    for phase, s in record["phases"].items():
        lat = s["latency"]
        per_min = lat["n"] / (record["options"]["duration_s"] / 60)
        lines.append(f"[{phase}] {s['requests']} requests ({per_min:.1f} served per minute); outcomes: "
                     + ", ".join(f"{k}={v}" for k, v in s["outcomes"].items()))
        if lat["n"]:
            lines.append(f"  200s: p50 {lat['p50_ms']:.0f} ms  p95 {lat['p95_ms']:.0f} ms  max {lat['max_ms']:.0f} ms")
        for m in s["latency_by_minute"]:
            lines.append(f"  minute {m['minute']:>2}: n={m['n']:<4} p50 {m['p50_ms']:>7.0f} ms  p95 {m['p95_ms']:>7.0f} ms")
    c = record["checks"]
    rss = c["rss"]
    lines.append(f"no 5xx: {c['no_5xx']}; no connection failures: {c['no_connection_failures']}; "
                 f"failures: {record['n_failures']}")
    if "growth_mb" in rss:
        lines.append(f"RSS after warm-up: {rss['rss_start_mb']:.0f} -> {rss['rss_end_mb']:.0f} MiB "
                     f"(growth {rss['growth_mb']} MiB, bound {rss['bound_mb']}), fds {rss['fds_start']} -> "
                     f"{rss['fds_end']} (max {rss['fds_max']}): {'ok' if rss['pass'] else 'FAIL'}")
    else:
        lines.append(f"RSS: FAIL ({rss.get('why')})")
    if "contended_latency" in c:
        cc = c["contended_latency"]
        lines.append(f"contended: {cc['contended_requests']} requests, {cc['n_too_slow']} past "
                     f"{cc['factor']}x the free p95 {cc['limits_ms']}, unfinished {cc['unfinished']}: "
                     f"{'ok' if cc['pass'] else 'FAIL'}")
    a = record["agreement"]
    lines.append("metrics agree with clients: " + (str(a["agree"]) if a["available"] else "n/a (" + a["why"] + ")"))
    health = (record.get("server") or {}).get("health") or {}
    lines.append(f"server threads at the start: {health.get('threads')}; at the end: {record.get('threads_end')}")
    lines.append(f"healthy at the end: {record['health_end']['ok']}; load avg start {record['loadavg_start']} "
                 f"end {record['loadavg_end']}")
    lines.append("PASS" if record["pass"] else "FAIL")
    return "\n".join(lines)


def _main(args) -> int:
    fields = {k: getattr(args, k) for k in SoakOptions.__dataclass_fields__ if hasattr(args, k)}
    fields["server_args"] = tuple(args.server_args)
    record = soak(SoakOptions(**fields))
    record["argv"] = args.argv
    record["pass"] = verdict(record)
    print(_table(record))
    for f in record["failures"][:10]:
        print(f"failure: {f['outcome']} {f['status']} {f['detail']} <- {f['request']}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(record, indent=1) + "\n")
    if args.png_out:
        plot(record, args.png_out)
    return 0 if record["pass"] else 1
