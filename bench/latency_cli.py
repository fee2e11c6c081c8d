"""``bench latency``: flags -> ``LatencyConfig`` -> ``run_latency`` -> table, JSON, CSV, plot."""

from __future__ import annotations

import shlex
import sys

from thinkling.runtime.extras import require
from thinkling.runtime.speculative import SPECULATIVE_MODES
from thinkling.runtime.types import THINK_MODES

from .latency import LatencyConfig, run_latency


def register(sub) -> None:
    d = LatencyConfig()
    p = sub.add_parser("latency", help="TTFT, short-answer and end-to-end latency against a target",
                       description="Measure load time, TTFT, prefill/decode speed, time to a short "
                                   "answer and end-to-end latency per prompt class and profile, with "
                                   "p50/p95/p99 and a pass/fail verdict at p95.")
    p.add_argument("--model", default=d.model, help="registered name or path (default: the embedded model)")
    p.add_argument("--profile", choices=("laptop", "phone", "all"), default=d.profile,
                   help="laptop: this machine's physical cores; phone: an emulated phone budget "
                        "(thread cap, CPU pinning, smaller batch/context); all: both")
    p.add_argument("--prompts", default=d.prompts, metavar="FILE",
                   help="prompt classes as JSON or JSONL, or a built-in set name: "
                        "default (short chat question / medium / long context), arith")
    p.add_argument("--runs", type=int, default=d.runs, help="timed runs per class and profile")
    p.add_argument("--warmup", type=int, default=d.warmup, help="untimed runs per class first")
    p.add_argument("--target-ms", type=float, default=d.target_ms, help="the p95 latency target")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help="override every class's max_tokens")
    p.add_argument("--think", choices=THINK_MODES, default=d.think,
                   help="reasoning mode of the requests (default off: direct answers)")
    p.add_argument("--speculative", choices=SPECULATIVE_MODES, default=d.speculative,
                   help="ngram: prompt-lookup speculative decoding in thinkling's runner (greedy; same output)")
    p.add_argument("--endpoint", default=d.endpoint, metavar="URL",
                   help="time a running OpenAI-compatible server instead (e.g. http://phone:8080)")
    p.add_argument("--baseline", action="store_true", default=d.baseline,
                   help="also run raw llama-cpp-python, interleaved, and report thinkling's overhead")
    p.add_argument("--label", default=d.label,
                   help="a note kept in the record and shown in every title (e.g. where the numbers "
                        "come from when they are not this machine's own)")
    p.add_argument("--json", metavar="OUT", help="write the full record (fingerprint, summaries, samples)")
    p.add_argument("--csv", metavar="OUT", help="write every timed sample as CSV")
    p.add_argument("--plot", metavar="OUT.png", help="write the latency distribution plot")
    p.add_argument("--markdown", metavar="OUT.md", help="write a short markdown summary")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_latency_cli)


def config_from_args(args) -> LatencyConfig:
    return LatencyConfig(model=args.model, profile=args.profile, prompts=args.prompts, runs=args.runs,
                         warmup=args.warmup, target_ms=args.target_ms, endpoint=args.endpoint,
                         baseline=args.baseline, max_tokens=args.max_tokens, think=args.think,
                         speculative=args.speculative, label=args.label)


def run_latency_cli(args) -> int:
    from .report import print_report, write_csv, write_json, write_markdown

    if args.plot:  # fail before the benchmark, not after it
        require("bench latency --plot", "bench", "matplotlib")

    def progress(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    command = "bench " + shlex.join(getattr(args, "argv", None) or sys.argv[1:])
    record = run_latency(config_from_args(args), progress, command=command)
    print_report(record)
    if args.json:
        write_json(record, args.json)
    if args.csv:
        write_csv(record, args.csv)
    if args.markdown:
        write_markdown(record, args.markdown)
    if args.plot:
        from .plot import plot_latency
        plot_latency(record, args.plot)
    return 0
