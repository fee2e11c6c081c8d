"""`bench state-cost`: what reading the hidden state costs ``auto``, paired.

Each prompt's first token is produced twice, through the engine as ``auto``'s
probe does: once with the final hidden state of the last prompt token read in
the prefill (``GenerationRequest.hidden_state``), once without. The two runs
alternate in order from prompt to prompt, and each starts after another
prompt was put in the KV cache, so neither reuses the other's prefill. The
report is TTFT per path (median, p95) and the paired difference per prompt.
"""

from __future__ import annotations

import json
import statistics
import time

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams

from .files import write_text_atomic
from .stats import percentile
from .tasksets import load_tasks


def _ttft(engine: Engine, question: str, hidden: bool) -> tuple[float, bool]:
    req = GenerationRequest(messages=[Message("user", question)], max_tokens=1, think="off",
                            sampling=SamplingParams(temperature=0.0), hidden_state=hidden)
    chunks = list(engine.stream(req))
    return chunks[-1].timings.ttft_ms, chunks[0].hidden is not None


def state_cost(model: str, tasks: str, n: int = 24, threads: int | None = None) -> dict:
    """TTFT with and without the hidden-state read on the first ``n`` questions of ``tasks``."""
    rows = load_tasks(tasks)[: n + 1]
    if len(rows) < 3:
        raise ValueError(f"state-cost needs at least 3 questions in {tasks}")
    with_state, without, read = [], [], 0
    with Engine(model, EngineConfig(n_ctx=1024, n_threads=threads, queue_size=1)) as engine:
        _ttft(engine, rows[0]["question"], False)  # warm-up
        for i, row in enumerate(rows[1:], start=1):
            order = (True, False) if i % 2 else (False, True)
            for hidden in order:
                _ttft(engine, rows[i - 1]["question"], False)  # another prompt in the cache
                ms, got = _ttft(engine, row["question"], hidden)
                (with_state if hidden else without).append(ms)
                read += got
    diff = [a - b for a, b in zip(with_state, without)]
    summary = lambda xs: {"p50_ms": statistics.median(xs), "p95_ms": percentile(xs, 95)}  # noqa: E731
    return {"model": model, "tasks": tasks, "n": len(diff), "states_read": read,
            "with_state": summary(with_state), "without": summary(without),
            "paired_diff_ms": {"median": statistics.median(diff), "mean": statistics.fmean(diff),
                               "p95": percentile(diff, 95)},
            "per_prompt": {"with_state": with_state, "without": without}, "at": time.strftime("%Y-%m-%d %H:%M")}


def register(sub) -> None:
    p = sub.add_parser("state-cost", help="TTFT with and without reading the hidden state (auto's signal)")
    p.add_argument("--model", required=True)
    p.add_argument("--tasks", default="arith-test", help="questions to prefill (a task set)")
    p.add_argument("-n", type=int, default=24, help="prompts (paired)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None, help="write the result here")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    r = state_cost(args.model, args.tasks, args.n, args.threads)
    if args.json:
        write_text_atomic(args.json, json.dumps(r, indent=1))
    w, o, d = r["with_state"], r["without"], r["paired_diff_ms"]
    print(f"{r['model']}: TTFT with the state read p50 {w['p50_ms']:.1f} ms (p95 {w['p95_ms']:.1f}), "
          f"without p50 {o['p50_ms']:.1f} ms (p95 {o['p95_ms']:.1f}); paired difference median "
          f"{d['median']:+.1f} ms, mean {d['mean']:+.1f} ms over {r['n']} prompts ({r['states_read']} states read)")
    return 0
