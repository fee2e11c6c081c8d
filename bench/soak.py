"""``bench soak``: a long run of mixed traffic against one server, watched from outside.

``soak(options)`` drives a running server (``--url``) or starts ``thinkling
serve`` on loopback, sends the seeded mix of ``bench.soak_traffic`` from a
few client threads for ``duration_s``, samples the server process's RSS, open
file descriptors and threads, and returns a record: outcomes, failures with the
request that caused each, latency per minute, the samples, whether ``/health``
and ``/metrics`` agree with what the clients saw, and the verdict
(``bench.soak_report``). With ``contend=N`` a second phase of the same length
and seed runs beside N busy processes (``bench.contend.busy_processes``).

Loopback only; every loop is bounded by time and by a request count.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import fingerprint as fp
from . import soak_report as report
from .contend import busy_processes
from .local_server import free_port, wait_healthy
from .soak_traffic import Mix, Shot, burst, draw, fixed_corpus

if TYPE_CHECKING:
    import httpx
# httpx, psutil: imported where used, so `bench --help` works on a core install.

LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class SoakOptions:
    """What one soak does. Field names match ``bench soak``'s flags."""

    url: str | None = None  # a running server on loopback; None: start `thinkling serve`
    model: str | None = None  # for the server this starts (default: the embedded default)
    dialect: str = "thinkling"  # "openai": only what a plain OpenAI-compatible server understands
    duration_s: float = 60.0  # per phase
    clients: int = 4
    seed: int = 0
    contend: int = 0  # busy processes beside a second phase (0: one phase)
    busy_kind: str = "python"  # bench.contend.BUSY_KINDS; "spin": each pinned to one core
    max_tokens: int = 24
    burst_size: int = 12
    request_timeout_s: float = 120.0  # a client gives up after this (counted as a failure)
    max_requests: int = 100_000  # per phase: a bound besides the clock
    warmup_s: float | None = None  # RSS growth is measured after this; None: min(60, duration/4)
    rss_bound_mb: float = 64.0
    sample_every_s: float = 2.0
    pid: int | None = None  # the server's pid when --url is given (default: whoever listens on its port)
    api_key: str | None = None
    server_args: tuple[str, ...] = ()  # extra `thinkling serve` flags (e.g. --thread-policy adaptive)
    log_path: str | None = None  # where a started server writes its log

    def mix(self) -> Mix:
        return Mix(max_tokens=self.max_tokens, dialect=self.dialect)

    def warmup(self) -> float:
        return self.warmup_s if self.warmup_s is not None else min(60.0, self.duration_s / 4)


@dataclass
class Result:
    """One request's fate, as the client saw it."""

    kind: str
    path: str
    phase: str
    t: float  # seconds from the run's start
    ms: float
    outcome: str  # "200", "400", "429", ..., "disconnect", "cancel", "timeout", "conn_error", "unterminated"
    status: int | None = None
    events: int = 0
    error_code: str | None = None  # an OpenAI error body's code, or an in-band stream error's
    detail: str | None = None
    shot: Shot | None = field(default=None, repr=False)

    def row(self) -> dict:
        d = asdict(self)
        d.pop("shot")
        return d


# --- one request -------------------------------------------------------------------


def _error_code(text: str) -> str | None:
    import json

    try:
        err = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return None
    return err.get("code") if isinstance(err, dict) else (str(err) if err else None)


def _read_stream(resp: httpx.Response, shot: Shot, res: Result) -> None:
    for line in resp.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            res.outcome = "200"
            return
        res.events += 1
        if '"error"' in data[:20]:
            res.error_code = _error_code(data) or "stream_error"
        if shot.drop_after_events is not None and res.events >= shot.drop_after_events:
            res.outcome = "disconnect"
            return  # leaving the with-block closes the connection mid-stream
    res.outcome = "unterminated"  # the server closed the stream without [DONE]
    res.detail = f"stream closed after {res.events} events without [DONE]"


def send(client: httpx.Client, base: str, shot: Shot, phase: str, t0: float, timeout_s: float) -> Result:
    """Send ``shot`` and classify what came back."""
    import httpx

    start = time.perf_counter()
    res = Result(shot.kind, shot.path, phase, start - t0, 0.0, "conn_error", shot=shot)
    read = shot.give_up_s if shot.give_up_s is not None else timeout_s
    timeout = httpx.Timeout(connect=10.0, read=read, write=30.0, pool=10.0)
    try:
        with client.stream("POST", base + shot.path, content=shot.body, headers=shot.headers,
                           timeout=timeout) as resp:
            res.status = resp.status_code
            if resp.status_code == 200 and shot.stream:
                _read_stream(resp, shot, res)
            else:
                text = resp.read().decode("utf-8", "replace")
                res.outcome = str(resp.status_code)
                if resp.status_code != 200:
                    res.error_code = _error_code(text)
                    res.detail = text[:300] if resp.status_code >= 500 else None
    except httpx.TimeoutException:
        res.outcome = "cancel" if shot.give_up_s is not None else "timeout"
    except httpx.TransportError as e:
        res.detail = f"{type(e).__name__}: {e}"
    res.ms = (time.perf_counter() - start) * 1000
    return res


# --- the server and its process ------------------------------------------------------


def start_server(opts: SoakOptions, log_path: Path) -> tuple[str, subprocess.Popen]:
    """``thinkling serve`` on a free loopback port; returns once /health answers 200."""
    port = free_port()
    cmd = [sys.executable, "-m", "thinkling.runtime.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--queue-size", "4", "--max-tokens-cap", "64", "--default-max-tokens", "16", "--log-level", "warning",
           *(["--model", opts.model] if opts.model else []), *opts.server_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THINKLING_") or k == "THINKLING_HOME"}
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, timeout_s=600, hint=f"; see {log_path}")
    return url, proc


def _listener_pid(port: int) -> int | None:
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return conn.pid
    return None


class Sampler:
    """The server process's RSS, open fds and threads, plus the load average, every few seconds."""

    def __init__(self, pid: int, t0: float, every_s: float):
        import psutil

        self.proc = psutil.Process(pid)
        self.t0, self.every_s = t0, every_s
        self.samples: list[dict] = []
        self.phase = "free"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                with self.proc.oneshot():
                    self.samples.append({"t": round(time.perf_counter() - self.t0, 2), "phase": self.phase,
                                         "rss_mb": round(self.proc.memory_info().rss / 2 ** 20, 1),
                                         "fds": self.proc.num_fds(), "threads": self.proc.num_threads(),
                                         "loadavg1": os.getloadavg()[0]})
            except psutil.Error:  # gone: the health check at the end reports it
                return
            self._stop.wait(self.every_s)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


# --- the phases ------------------------------------------------------------------------


@dataclass
class _Phase:
    """One phase's shared state: the clients' deadline, their request budget and results."""

    opts: SoakOptions
    base: str
    name: str
    t0: float
    end: float
    budget: int
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> bool:
        with self.lock:
            self.budget -= 1
            return self.budget >= 0

    def client(self, worker: int) -> None:
        """One client thread: draw, send, record, until the phase's time or budget runs out."""
        import httpx

        opts = self.opts
        mix, corpus = opts.mix(), fixed_corpus(opts.dialect)
        rng = random.Random(f"{opts.seed}-{worker}")  # the same sequence in each phase
        headers = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}

        def one(shot: Shot) -> Result:
            return send(client, self.base, shot, self.name, self.t0, opts.request_timeout_s)

        with httpx.Client(headers=headers) as client, ThreadPoolExecutor(opts.burst_size) as pool:
            while time.perf_counter() < self.end and self._take():
                shot = draw(rng, mix, corpus)
                results = list(pool.map(one, burst(rng, mix, opts.burst_size))) if shot.kind == "burst" else [one(shot)]
                with self.lock:
                    self.results.extend(results)


def run_phase(opts: SoakOptions, base: str, phase: str, t0: float) -> list[Result]:
    """``opts.clients`` threads sending the mix until ``duration_s`` has passed."""
    state = _Phase(opts, base, phase, t0, time.perf_counter() + opts.duration_s, opts.max_requests)
    threads = [threading.Thread(target=state.client, args=(i,), name=f"soak-client-{i}", daemon=True)
               for i in range(opts.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(opts.duration_s + opts.request_timeout_s + 60)
    with state.lock:
        return list(state.results)


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK and not host.startswith("127."):
        raise ValueError(f"bench soak drives loopback servers only, not {host!r}")


def soak(opts: SoakOptions) -> dict:
    """Run the soak; returns the record (``record["pass"]`` is the verdict)."""
    if opts.duration_s <= 0 or opts.clients < 1 or opts.contend < 0 or opts.dialect not in ("thinkling", "openai"):
        raise ValueError("need duration > 0, clients >= 1, contend >= 0, dialect thinkling|openai")
    proc = None
    if opts.url is None:
        # the server log goes to the temp dir unless asked for, so a soak leaves nothing in the cwd
        log_path = Path(opts.log_path or Path(tempfile.gettempdir()) / f"thinkling-soak-server-{os.getpid()}.log")
        base, proc = start_server(opts, log_path)
    else:
        base = opts.url.rstrip("/")
        _check_loopback(base)
    try:
        return _soak_against(opts, base, proc)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # the server's own clean shutdown
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _soak_against(opts: SoakOptions, base: str, proc: subprocess.Popen | None) -> dict:
    pid = proc.pid if proc is not None else (opts.pid or _listener_pid(urlsplit(base).port or 80))
    if pid is None:
        raise ValueError("cannot find the server's process: pass --pid")
    auth = {"Authorization": f"Bearer {opts.api_key}"} if opts.api_key else {}
    before = report.scrape(base, auth)
    record = {"options": {**asdict(opts), "api_key": "***" if opts.api_key else None}, "url": base, "pid": pid,
              "machine": fp.machine_fingerprint(), "loadavg_start": list(os.getloadavg()),
              "server": report.server_facts(base, auth)}
    t0 = time.perf_counter()
    results: list[Result] = []
    with Sampler(pid, t0, opts.sample_every_s) as sampler:
        results += run_phase(opts, base, "free", t0)
        if opts.contend:
            sampler.phase = "busy"
            with busy_processes(opts.contend, opts.busy_kind):
                results += run_phase(opts, base, "busy", t0)
        report.wait_idle(base, auth, limit_s=opts.request_timeout_s)
        time.sleep(opts.sample_every_s)  # one sample after the last request
    record["loadavg_end"] = list(os.getloadavg())
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    record["agreement"] = report.agreement(results, before, report.scrape(base, auth))
    record["health_end"] = report.health(base, auth, pid)
    record["threads_end"] = ((report.server_facts(base, auth)["health"] or {}).get("threads"))  # policy, count
    record.update(report.summarize(results, sampler.samples, opts))
    return record
