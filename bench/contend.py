"""``bench contend``: decoding beside busy processes, fixed threads against adaptive.

Phones and laptops always run other work. This starts ``--busy`` CPU-bound
processes (each a tight Python loop: about one core), then times the same
greedy chat requests on two engines of the same model, one with a fixed thread
count and one with the adaptive policy (``runtime.threads``), alternating per
request so both see the same machine. The uncontended baseline is measured in
the same run, before the busy processes start. Reported per phase and policy:
per-request end-to-end median and p95, decode tok/s median, and the thread
count the adaptive engine ended on.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams

from . import fingerprint as fp
from .files import write_text_atomic
from .stats import percentile

QUESTIONS = ["Why is the sky blue?", "Write a short poem about autumn.", "Tell me a fun fact about the ocean.",
             "How do plants grow?", "Describe a sunset over the mountains.", "What do bees do all day?"]


def _burn(stop, kind: str) -> None:
    """Busy until told to stop: ``python`` is one core of plain interpreter work; ``blas`` is
    back-to-back matrix products in numpy's BLAS on its own threads (what a training job or
    an image filter looks like to the scheduler: several threads that spin while they wait)."""
    if kind == "blas":
        import numpy as np

        a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
        while not stop.is_set():
            a = (a @ a) * np.float32(1e-3)
        return
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


@contextmanager
def busy_processes(n: int, kind: str = "python", settle_s: float = 1.0) -> Iterator[list]:
    """``n`` busy processes (``_burn``) for the length of the with-block; always stopped after it."""
    stop = mp.Event()
    procs = [mp.Process(target=_burn, args=(stop, kind), daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        if procs:
            time.sleep(settle_s)
        yield procs
    finally:
        stop.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()


def _time(engine: Engine, question: str, max_tokens: int) -> dict:
    t0 = time.perf_counter()
    r = engine.generate(GenerationRequest(messages=[Message("user", question)], max_tokens=max_tokens, think="off",
                                          sampling=SamplingParams(temperature=0)))
    return {"e2e_ms": (time.perf_counter() - t0) * 1000, "decode_tok_s": r.timings.decode_tok_s,
            "tokens": len(r.tokens)}


def _summary(rows: list[dict]) -> dict:
    e2e = [r["e2e_ms"] for r in rows]
    return {"n": len(rows), "e2e_p50_ms": round(statistics.median(e2e), 1), "e2e_p95_ms": round(percentile(e2e, 95), 1),
            "e2e_max_ms": round(max(e2e), 1),
            "decode_tok_s_p50": round(statistics.median(r["decode_tok_s"] for r in rows), 1)}


def run(model: str | None, threads: int, busy: int, requests: int, max_tokens: int, kind: str = "python") -> dict:
    engines = {p: Engine(model, EngineConfig(n_ctx=1024, n_threads=threads, queue_size=1, thread_policy=p))
               for p in ("fixed", "adaptive")}
    record = {"machine": fp.machine_fingerprint(), "model": engines["fixed"].model_name, "threads": threads,
              "busy_processes": busy, "busy_kind": kind, "max_tokens": max_tokens, "phases": {}}
    try:
        for p, e in engines.items():  # warm both
            _time(e, QUESTIONS[0], 8)
        for phase in ("free", "busy"):
            rows: dict[str, list[dict]] = {"fixed": [], "adaptive": []}
            with busy_processes(busy if phase == "busy" else 0, kind):
                for i in range(requests):
                    order = ("fixed", "adaptive") if i % 2 == 0 else ("adaptive", "fixed")
                    for p in order:
                        rows[p].append(_time(engines[p], QUESTIONS[i % len(QUESTIONS)], max_tokens))
            record["phases"][phase] = {p: {**_summary(r), "threads_at_end": engines[p].threads()}
                                       for p, r in rows.items()}
    finally:
        for e in engines.values():
            e.close()
    return record


def register(sub) -> None:
    p = sub.add_parser("contend", help="decode beside busy processes: fixed vs adaptive threads")
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--busy", type=int, default=1, help="CPU-bound processes started beside the engines")
    p.add_argument("--busy-kind", choices=("python", "blas"), default="python",
                   help="python: one interpreter core each; blas: numpy matrix products on BLAS threads")
    p.add_argument("--requests", type=int, default=12, help="requests per policy and phase")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--json", dest="json_out", default=None)
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.threads < 1 or args.busy < 0 or args.requests < 1:
        raise ValueError("--threads and --requests must be >= 1, --busy >= 0")
    record = run(args.model, args.threads, args.busy, args.requests, args.max_tokens, args.busy_kind)
    print(f"{'phase':<6} {'policy':<9} {'e2e p50':>9} {'p95':>9} {'max':>9} {'tok/s':>7}  threads at end")
    for phase, by in record["phases"].items():
        for policy, s in by.items():
            print(f"{phase:<6} {policy:<9} {s['e2e_p50_ms']:>7.0f}ms {s['e2e_p95_ms']:>7.0f}ms "
                  f"{s['e2e_max_ms']:>7.0f}ms {s['decode_tok_s_p50']:>7.1f}  {s['threads_at_end']}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(record, indent=2) + "\n")
    return 0
