"""``bench contend``: serving beside other work, fixed threads against adaptive.

Phones and laptops always run other work. For each *case* (what runs beside
the engines: nothing, busy interpreter processes, one process spinning on one
pinned core, a 2-thread torch job) this starts that work, then sends the same
greedy chat requests to two engines of the same model, one with a fixed thread
count and one with the adaptive policy (``runtime.threads``), alternating per
request so both see the same machine, for ``case_seconds``. Reported per case
and policy: TTFT, decode ms/token and end-to-end p50/p95, requests served per
minute of that policy's own serving time, the thread count the engine ended on,
and the load average around the case.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams

from . import fingerprint as fp
from .files import write_text_atomic
from . import stats

QUESTIONS = ["Why is the sky blue?", "Write a short poem about autumn.", "Tell me a fun fact about the ocean.",
             "How do plants grow?", "Describe a sunset over the mountains.", "What do bees do all day?"]
BUSY_KINDS = ("python", "spin", "blas", "torch")
POLICIES = ("fixed", "adaptive")


@dataclass(frozen=True)
class Beside:
    """What a case runs beside the engines: ``n`` processes of ``kind`` (``_burn``)."""

    n: int
    kind: str = "python"
    label: str = ""


# The cases of issue #32, in the order they run (the quiet one first: the baseline).
CASES: dict[str, Beside] = {
    "none": Beside(0, "python", "nothing"),
    "busy1": Beside(1, "python", "1 busy Python process"),
    "busy2": Beside(2, "python", "2 busy Python processes"),
    "spin": Beside(1, "spin", "1 process spinning on one pinned core"),
    "torch2": Beside(1, "torch", "a torch job with 2 threads"),
}


def _spin_core(index: int) -> int:
    """The core the ``index``-th spinner holds: the highest allowed ones first (the
    engine's threads run on all allowed cores, so any one of them is contended)."""
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[-1 - index % len(allowed)]


def _burn(stop, kind: str, index: int = 0) -> None:
    """Busy until told to stop. ``python``: one core of plain interpreter work, wherever
    the scheduler puts it; ``spin``: the same loop pinned to one core
    (``os.sched_setaffinity``), a background app that holds a core; ``blas``: back-to-back
    matrix products in numpy's BLAS on its own threads; ``torch``: float32 matrix products
    on 2 torch threads (a training job's shape to the scheduler)."""
    if kind == "spin":
        os.sched_setaffinity(0, {_spin_core(index)})
    if kind == "blas":
        import numpy as np

        a = np.random.default_rng(0).standard_normal((512, 512), dtype=np.float32)
        while not stop.is_set():
            a = (a @ a) * np.float32(1e-3)
        return
    if kind == "torch":
        import torch

        torch.set_num_threads(2)
        a = torch.randn(512, 512)
        while not stop.is_set():
            a = (a @ a) * 1e-3
        return
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


@contextmanager
def busy_processes(n: int, kind: str = "python", settle_s: float = 1.0) -> Iterator[list]:
    """``n`` busy processes (``_burn``) for the length of the with-block; always stopped after it."""
    if kind not in BUSY_KINDS:
        raise ValueError(f"busy kind must be one of {BUSY_KINDS}, got {kind!r}")
    if n and kind == "torch" and importlib.util.find_spec("torch") is None:
        raise ValueError("the torch busy kind needs torch installed (pip install torch)")
    stop = mp.Event()
    procs = [mp.Process(target=_burn, args=(stop, kind, i), daemon=True) for i in range(n)]
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
    t = r.timings
    return {"e2e_ms": (time.perf_counter() - t0) * 1000, "ttft_ms": t.ttft_ms,
            "decode_ms_per_token": 1000 / t.decode_tok_s if t.decode_tok_s else None, "tokens": len(r.tokens)}


def _p50_p95(values: list[float | None]) -> tuple[float | None, float | None]:
    s = stats.summarize(values)
    return (None, None) if s is None else (round(s.p50, 1), round(s.p95, 1))


def summarize_policy(rows: list[dict]) -> dict:
    """One policy's requests in one case: medians, p95s and requests per minute of serving."""
    e2e = [r["e2e_ms"] for r in rows]
    (e50, e95), (t50, t95), (d50, d95) = (_p50_p95(e2e), _p50_p95([r["ttft_ms"] for r in rows]),
                                          _p50_p95([r["decode_ms_per_token"] for r in rows]))
    return {"n": len(rows), "requests_per_min": round(len(rows) / (sum(e2e) / 60_000), 1) if e2e else 0.0,
            "ttft_p50_ms": t50, "ttft_p95_ms": t95, "decode_p50_ms_per_token": d50, "decode_p95_ms_per_token": d95,
            "e2e_p50_ms": e50, "e2e_p95_ms": e95, "e2e_max_ms": round(max(e2e), 1) if e2e else None}


def _run_case(engines: dict[str, Engine], case_seconds: float, max_requests: int | None, max_tokens: int) -> dict:
    """Alternate requests between the policies until ``case_seconds`` pass (each policy
    gets at least one request, at most ``max_requests``)."""
    rows: dict[str, list[dict]] = {p: [] for p in engines}
    end = time.monotonic() + case_seconds
    i = 0
    while (i == 0 or time.monotonic() < end) and (max_requests is None or i < max_requests):
        order = POLICIES if i % 2 == 0 else POLICIES[::-1]
        for p in order:
            rows[p].append(_time(engines[p], QUESTIONS[i % len(QUESTIONS)], max_tokens))
        i += 1
    return {p: {**summarize_policy(r), "threads_at_end": engines[p].threads()} for p, r in rows.items()}


def run(model: str | None, threads: int, cases: list[str], case_seconds: float, max_tokens: int,
        max_requests: int | None = None) -> dict:
    """Every case in ``cases`` (keys of ``CASES``) in order, on the same two engines."""
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        raise ValueError(f"cases must be among {list(CASES)}, got {cases}")
    engines = {p: Engine(model, EngineConfig(n_ctx=1024, n_threads=threads, queue_size=1, thread_policy=p))
               for p in POLICIES}
    record = {"machine": fp.machine_fingerprint(), "model": engines["fixed"].model_name, "threads": threads,
              "case_seconds": case_seconds, "max_tokens": max_tokens, "cases": {}}
    try:
        for e in engines.values():  # warm both
            _time(e, QUESTIONS[0], 8)
        for name in cases:
            beside = CASES[name]
            with busy_processes(beside.n, beside.kind):
                load_start = os.getloadavg()
                policies = _run_case(engines, case_seconds, max_requests, max_tokens)
                load_end = os.getloadavg()
            record["cases"][name] = {"beside": beside.label, "busy_processes": beside.n, "busy_kind": beside.kind,
                                     "loadavg_start": [round(x, 2) for x in load_start],
                                     "loadavg_end": [round(x, 2) for x in load_end], "policies": policies}
    finally:
        for e in engines.values():
            e.close()
    return record


def _threads(state: dict) -> str:
    if state["policy"] != "adaptive":
        return str(state["threads"])
    return (f"{state['threads']} (prefill {state['batch_threads']}, {state['changes']} changes, "
            f"best ms/token {state['best_ms_per_token']})")


def table(record: dict) -> str:
    """The printed table: one row per case and policy."""
    lines = [f"{'case':<7} {'policy':<9} {'n':>4} {'req/min':>8} {'TTFT p50':>9} {'p95':>7} "
             f"{'decode p50':>11} {'p95':>7} {'e2e p50':>8} {'p95':>7}  threads at end"]

    def ms(v):
        return "-" if v is None else f"{v:.0f}"

    for name, case in record["cases"].items():
        for policy, s in case["policies"].items():
            decode = "-" if s["decode_p50_ms_per_token"] is None else f"{s['decode_p50_ms_per_token']:.1f}"
            decode95 = "-" if s["decode_p95_ms_per_token"] is None else f"{s['decode_p95_ms_per_token']:.1f}"
            lines.append(f"{name:<7} {policy:<9} {s['n']:>4} {s['requests_per_min']:>8.1f} "
                         f"{ms(s['ttft_p50_ms']):>7}ms {ms(s['ttft_p95_ms']):>5}ms {decode:>8}ms/t {decode95:>5}ms "
                         f"{ms(s['e2e_p50_ms']):>6}ms {ms(s['e2e_p95_ms']):>5}ms  {_threads(s['threads_at_end'])}")
        lines.append(f"{'':<7} load {case['loadavg_start']} -> {case['loadavg_end']} beside: {case['beside']}")
    return "\n".join(lines)


def register(sub) -> None:
    p = sub.add_parser("contend", help="serving beside other work (nothing, busy, spinning, torch): "
                                       "fixed vs adaptive threads")
    p.add_argument("--model", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default=",".join(CASES),
                   help="comma-separated, run in this order: "
                        + ", ".join(f"{k} ({v.label})" for k, v in CASES.items()))
    p.add_argument("--case-seconds", type=float, default=60.0,
                   help="how long each case alternates requests between the policies")
    p.add_argument("--requests", type=int, default=None,
                   help="at most this many requests per policy and case (default: as many as the time allows)")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--json", dest="json_out", default=None)
    p.set_defaults(func=_main)


def _main(args) -> int:
    if args.threads < 1 or args.case_seconds <= 0 or (args.requests is not None and args.requests < 1):
        raise ValueError("--threads and --requests must be >= 1, --case-seconds > 0")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    record = run(args.model, args.threads, cases, args.case_seconds, args.max_tokens, args.requests)
    record["argv"] = getattr(args, "argv", None)
    print(table(record))
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(record, indent=2) + "\n")
    return 0
