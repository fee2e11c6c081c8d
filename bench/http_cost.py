"""The endpoint's own cost: time to first token through HTTP streaming against
in-process ``Engine.stream``, same model, settings and prompts, one session.

    bench http-cost --runs 20 --threads 1 --ctx 1024

A ``thinkling serve`` subprocess and an in-process engine are loaded side by
side; runs alternate between them (order flipped every run) so background load
hits both alike, and every generation is drained so the two never overlap.
``cold`` prompts differ from their first token (full prefill each time);
``warm`` repeats one prompt (prefix cache: about one token of prefill), which
leaves mostly the fixed costs, where the HTTP layer's share shows. With
``--peer URL`` it compares ``thinkling serve`` with another server instead. On a busy
machine the engine's prefill noise swamps a few milliseconds, so each path's
wall time minus the engine's own ``ttft_ms`` is reported too (``*_over_engine``).
Percentiles are ``bench.stats.percentile``'s (linear interpolation), as in every bench.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from thinkling.runtime.engine import Engine, EngineConfig
from thinkling.runtime.hardware import cpu_model
from thinkling.runtime.types import GenerationRequest, Message, SamplingParams

from .local_server import free_port, wait_healthy
from .stats import percentile

if TYPE_CHECKING:
    import httpx  # the test extra; imported where a measurement starts, so `bench` runs without it

MODES = ("cold", "warm")


@dataclass(frozen=True)
class HttpCostOptions:
    """What ``measure_http_cost`` runs: ``runs`` measured (after ``warmup``) per side and mode."""

    model: str | None = None
    runs: int = 20
    warmup: int = 3
    max_tokens: int = 4
    threads: int | None = None
    ctx: int = 1024
    modes: tuple[str, ...] = MODES
    peer: str | None = None  # another OpenAI-compatible server on the same model: compare with it instead

QUESTION = "Explain in one sentence why the sky is blue."


def _prompt(mode: str, i: int) -> str:
    return QUESTION if mode == "warm" else f"Question {i}. {QUESTION}"


def ttft_in_process(engine: Engine, text: str, max_tokens: int) -> tuple[float, float]:
    """(wall ms to the first chunk, the engine's own ttft_ms)."""
    req = GenerationRequest(messages=[Message("user", text)], max_tokens=max_tokens,
                            sampling=SamplingParams(temperature=0))
    t0 = time.perf_counter()
    first = None
    for chunk in engine.stream(req):
        if first is None:
            first = (time.perf_counter() - t0) * 1000
        last = chunk
    return first, last.timings.ttft_ms


def ttft_http(client: httpx.Client, url: str, text: str, max_tokens: int) -> tuple[float, float]:
    """(wall ms to the first SSE event, the server's reported ttft_ms)."""
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    t0 = time.perf_counter()
    first, server_ttft = None, float("nan")
    with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            if first is None:
                first = (time.perf_counter() - t0) * 1000
            if line != "data: [DONE]":
                event = json.loads(line[6:])
                server_ttft = event.get("timings", {}).get("ttft_ms", server_ttft)
    return first, server_ttft


def ttft_http_raw(client: httpx.Client, url: str, text: str, max_tokens: int) -> float:
    """Wall ms to the first SSE event carrying text, for any OpenAI-compatible
    server: raw ``/v1/completions``, so both servers see the same tokens."""
    body = {"prompt": text, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if first is None and line.startswith("data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if choices[0].get("text"):
                    first = (time.perf_counter() - t0) * 1000
    return first if first is not None else float("nan")


def summary(xs: list[float]) -> dict:
    return {"n": len(xs), "median": statistics.median(xs), "p10": percentile(xs, 10), "p90": percentile(xs, 90),
            "min": min(xs), "max": max(xs)}


def _start_server(args: HttpCostOptions, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "thinkling.runtime.cli", "serve", "--port", str(port), "--ctx", str(args.ctx),
           "--queue-size", "2", "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.model:
        cmd += ["--model", args.model]
    env = {k: v for k, v in os.environ.items() if k != "THINKLING_API_KEY"}
    return subprocess.Popen(cmd, env=env)


def measure_peer(args: HttpCostOptions) -> dict:
    """thinkling serve vs ``args.peer`` (e.g. llama-server on the same GGUF), both
    over HTTP streaming, raw completions, alternating as in ``measure``."""
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(args, port)
    try:
        # a fresh connection per request on both sides: llama-server (cpp-httplib)
        # closes kept-alive connections after a few requests, which races with reuse
        with httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            wait_healthy(url, server)
            wait_healthy(args.peer)
            out = {}
            for mode in args.modes:
                rows = {"thinkling": [], "peer": []}
                for i in range(args.warmup + args.runs):
                    text = _prompt(mode, i)
                    order = ("thinkling", "peer") if i % 2 else ("peer", "thinkling")
                    for side in order:
                        wall = ttft_http_raw(client, url if side == "thinkling" else args.peer, text,
                                             args.max_tokens)
                        if i >= args.warmup:
                            rows[side].append(wall)
                out[mode] = {k: summary(v) for k, v in rows.items()} | {
                    "paired_diff": summary([a - b for a, b in zip(rows["thinkling"], rows["peer"])])}
            return out
    finally:
        server.terminate()
        server.wait(30)


def measure(args: HttpCostOptions) -> dict:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_server(args, port)
    engine = Engine(args.model, EngineConfig(n_ctx=args.ctx, n_threads=args.threads, queue_size=2))
    try:
        with httpx.Client(timeout=300) as client:
            wait_healthy(url, server)
            out = {}
            for mode in args.modes:
                rows = {"http": [], "in_process": [], "http_engine_ttft": [], "in_process_engine_ttft": []}
                for i in range(args.warmup + args.runs):
                    text = _prompt(mode, i)
                    order = ("http", "in_process") if i % 2 else ("in_process", "http")
                    for side in order:
                        if side == "http":
                            wall, eng = ttft_http(client, url, text, args.max_tokens)
                        else:
                            wall, eng = ttft_in_process(engine, text, args.max_tokens)
                        if i >= args.warmup:
                            rows[side].append(wall)
                            rows[f"{side}_engine_ttft"].append(eng)
                diffs = [h - p for h, p in zip(rows["http"], rows["in_process"])]
                # wall minus the engine's own ttft_ms: what each path adds on top of the
                # engine, mostly free of the engine's (noisy) prefill time
                extra = {side: [w - e for w, e in zip(rows[side], rows[f"{side}_engine_ttft"])]
                         for side in ("http", "in_process")}
                out[mode] = {k: summary(v) for k, v in rows.items()} | {
                    "paired_diff": summary(diffs), "http_over_engine": summary(extra["http"]),
                    "in_process_over_engine": summary(extra["in_process"])}
            return out
    finally:
        engine.close()
        server.terminate()
        server.wait(30)


def measure_http_cost(opts: HttpCostOptions) -> dict:
    """The machine (load average before and after) and the per-mode summaries."""
    result = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "loadavg_start": os.getloadavg(),
                          "threads": opts.threads, "python": platform.python_version()},
              "results": measure_peer(opts) if opts.peer else measure(opts)}
    result["machine"]["loadavg_end"] = os.getloadavg()
    return result


def register(sub) -> None:
    d = HttpCostOptions()
    p = sub.add_parser("http-cost", help="TTFT through HTTP streaming vs in-process (the endpoint's own cost)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=d.model)
    p.add_argument("--runs", type=int, default=d.runs)
    p.add_argument("--warmup", type=int, default=d.warmup)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--ctx", type=int, default=d.ctx)
    p.add_argument("--modes", nargs="+", default=list(d.modes), choices=MODES)
    p.add_argument("--peer", default=d.peer, metavar="URL",
                   help="instead: compare with another OpenAI-compatible server already running on the same "
                        "model (e.g. llama-server), over raw /v1/completions streaming")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    opts = HttpCostOptions(model=args.model, runs=args.runs, warmup=args.warmup, max_tokens=args.max_tokens,
                           threads=args.threads, ctx=args.ctx, modes=tuple(args.modes), peer=args.peer)
    result = measure_http_cost(opts)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(json.dumps(result["machine"]))
    for mode, rows in result["results"].items():
        print(f"\n[{mode}] ms        n   median     p10     p90     min     max")
        for name, s in rows.items():
            print(f"  {name:24} {s['n']:3d} {s['median']:8.1f} {s['p10']:7.1f} {s['p90']:7.1f} "
                  f"{s['min']:7.1f} {s['max']:7.1f}")
    return 0
