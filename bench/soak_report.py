"""What a soak found: outcomes, failures, latency per minute, memory, agreement with
the server's own counters, and the verdict. Pure functions over the client's
results and the sampler's rows, plus the few HTTP reads of /health and /metrics.

The verdict fails on any 5xx, connection error, client timeout or stream that
ended without ``[DONE]``; on RSS growth past the bound after warm-up; on a server
that ends unhealthy; and, with busy processes, on any contended request slower
than ``CONTENDED_FACTOR`` times the uncontended p95 of its kind.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, defaultdict

from .stats import percentile

CONTENDED_FACTOR = 10
FAILURES = ("timeout", "conn_error", "unterminated")
GENERATION = ("/v1/chat/completions", "/v1/completions")
# Kinds whose 200s are timed against each other across phases (bursts wait in the queue by design).
TIMED = ("chat", "chat_stream", "completion", "completion_stream")


def _get(base: str, path: str, auth: dict, timeout: float = 10.0):
    """GET ``base + path``: the response, or None when the server cannot be reached."""
    import httpx

    try:
        return httpx.get(base + path, headers=auth, timeout=timeout)
    except httpx.TransportError:
        return None


def scrape(base: str, auth: dict) -> dict[tuple[str, str], float] | None:
    """``thinkling_http_requests_total`` by (endpoint, status), or None for a server without it."""
    from prometheus_client.parser import text_string_to_metric_families

    r = _get(base, "/metrics", auth)
    if r is None or r.status_code != 200 or "thinkling_http_requests_total" not in r.text:
        return None
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "thinkling_http_requests_total":
                counts[(s.labels["endpoint"], s.labels["status"])] = s.value
            elif s.name in ("thinkling_client_disconnects_total", "thinkling_queue_depth"):
                counts[(s.name, "")] = s.value
            elif s.name == "thinkling_engine_generations_total":
                counts[(s.name, s.labels["outcome"])] = s.value
    return counts


def server_facts(base: str, auth: dict) -> dict:
    h, m = _get(base, "/health", auth), _get(base, "/v1/models", auth)
    facts = {"health": h.json() if h is not None and h.status_code == 200 else None}
    try:
        facts["models"] = [d.get("id") for d in m.json().get("data", [])] if m is not None else None
    except ValueError:
        facts["models"] = None
    return facts


def wait_idle(base: str, auth: dict, limit_s: float) -> None:
    """Until the server reports an empty queue (bounded); a plain server: a short pause."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        r = _get(base, "/health", auth)
        if r is None or r.status_code != 200 or "queue_depth" not in r.text:
            time.sleep(1.0)
            return
        if r.json().get("queue_depth") == 0:
            return
        time.sleep(0.2)


def health(base: str, auth: dict, pid: int) -> dict:
    import psutil

    r = _get(base, "/health", auth)
    alive = psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return {"status": r.status_code if r is not None else None, "process_alive": alive,
            "ok": alive and r is not None and r.status_code == 200,
            "body": (r.text[:300] if r is not None else None)}


def agreement(results, before, after) -> dict:
    """Do the server's counters tell the story the clients saw?

    Exact: every non-200 status on the generation routes, per status (a 429 the
    client got is a 429 the server counted). Totals: each request sent is one
    request counted. 200 and 499 (client closed) are compared together: a cancel
    racing the answer can land on either side."""
    if before is None or after is None:
        return {"available": False, "why": "the server has no thinkling_http_requests_total"}
    delta = Counter({k: after.get(k, 0) - before.get(k, 0) for k in after})
    client = Counter()
    sent = 0
    for r in results:
        sent += 1
        client[(r.path, r.outcome if r.outcome.isdigit() else "200|499")] += 1
    rows, ok = [], True
    for endpoint in GENERATION:
        statuses = {s for (e, s) in delta if e == endpoint} | {s for (e, s) in client if e == endpoint}
        for status in sorted(statuses - {"200", "499", "200|499"}):
            c, s = client[(endpoint, status)], delta[(endpoint, status)]
            rows.append({"endpoint": endpoint, "status": status, "client": c, "server": s, "agree": c == s})
            ok &= c == s
        c = client[(endpoint, "200")] + client[(endpoint, "200|499")]
        s = delta[(endpoint, "200")] + delta[(endpoint, "499")]
        rows.append({"endpoint": endpoint, "status": "200+499", "client": c, "server": s, "agree": c == s})
        ok &= c == s
    server_total = sum(v for (e, _), v in delta.items() if e in GENERATION)
    dropped = sum(1 for r in results if r.outcome in ("disconnect", "cancel"))
    return {"available": True, "agree": ok and server_total == sent, "requests_sent": sent,
            "requests_counted": server_total, "rows": rows, "client_drops": dropped,
            "server_disconnects": delta[("thinkling_client_disconnects_total", "")],
            "queue_depth_end": after.get(("thinkling_queue_depth", "")),
            "engine_generations": {k[1]: v for k, v in delta.items() if k[0] == "thinkling_engine_generations_total"}}


def _lat(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 1), "p95_ms": round(percentile(values, 95), 1),
            "max_ms": round(max(values), 1)}


def _phase_summary(rs: list) -> dict:
    ok = [r for r in rs if r.outcome == "200" and r.kind != "hostile"]
    minutes = defaultdict(list)
    for r in ok:
        minutes[int(r.t // 60)].append(r.ms)
    kinds = defaultdict(list)
    for r in ok:
        kinds[r.kind].append(r.ms)
    return {"requests": len(rs), "outcomes": dict(sorted(Counter(r.outcome for r in rs).items())),
            "error_codes": dict(sorted(Counter(f"{r.outcome}:{r.error_code}" for r in rs if r.error_code).items())),
            "latency": _lat([r.ms for r in ok]),
            "latency_by_kind": {k: _lat(v) for k, v in sorted(kinds.items())},
            "latency_by_minute": [{"minute": m, **_lat(v)} for m, v in sorted(minutes.items())]}


def rss_check(samples: list[dict], warmup_s: float, bound_mb: float) -> dict:
    """Growth = median RSS of the last fifth of the samples after warm-up minus the
    median of the first fifth; passes within ``bound_mb``."""
    after = [s["rss_mb"] for s in samples if s["t"] >= warmup_s]
    if len(after) < 5:
        return {"pass": False, "why": "too few samples after warm-up", "samples": len(after)}
    k = max(1, len(after) // 5)
    start, end = statistics.median(after[:k]), statistics.median(after[-k:])
    fds = [s["fds"] for s in samples if s["t"] >= warmup_s]
    return {"pass": end - start <= bound_mb, "bound_mb": bound_mb, "warmup_s": warmup_s,
            "rss_start_mb": start, "rss_end_mb": end, "growth_mb": round(end - start, 1),
            "rss_max_mb": max(after), "fds_start": fds[0], "fds_end": fds[-1], "fds_max": max(fds)}


def contention_check(results: list) -> dict:
    """Every contended 200 of a timed kind within ``CONTENDED_FACTOR`` x its kind's uncontended p95."""
    free = defaultdict(list)
    for r in results:
        if r.phase == "free" and r.outcome == "200" and r.kind in TIMED:
            free[r.kind].append(r.ms)
    limits = {k: CONTENDED_FACTOR * percentile(v, 95) for k, v in free.items() if v}
    busy = [r for r in results if r.phase == "busy" and r.kind in TIMED]
    slow = [{"kind": r.kind, "ms": round(r.ms, 1), "limit_ms": round(limits[r.kind], 1), "t": round(r.t, 1)}
            for r in busy if r.outcome == "200" and r.kind in limits and r.ms > limits[r.kind]]
    unfinished = [r.outcome for r in busy if r.outcome != "200" and not r.outcome.startswith("4")]
    return {"pass": not slow and not unfinished and bool(busy), "factor": CONTENDED_FACTOR,
            "limits_ms": {k: round(v, 1) for k, v in limits.items()}, "contended_requests": len(busy),
            "too_slow": slow[:50], "n_too_slow": len(slow), "unfinished": dict(Counter(unfinished))}


def summarize(results: list, samples: list[dict], opts) -> dict:
    """The record's analysis part: phases, failures, samples, checks, verdict."""
    phases = {p: _phase_summary([r for r in results if r.phase == p])
              for p in ("free", "busy") if any(r.phase == p for r in results)}
    failures = [{**r.row(), "request": r.shot.describe()} for r in results
                if r.outcome in FAILURES or (r.status or 0) >= 500 or r.error_code == "internal_error"]
    checks = {"no_5xx": not any((r.status or 0) >= 500 or r.error_code == "internal_error" for r in results),
              "no_connection_failures": not any(r.outcome in FAILURES for r in results),
              "rss": rss_check(samples, opts.warmup(), opts.rss_bound_mb)}
    if opts.contend:
        checks["contended_latency"] = contention_check(results)
    return {"phases": phases, "failures": failures[:100], "n_failures": len(failures), "checks": checks,
            "samples": samples, "requests": [r.row() for r in results]}


def verdict(record: dict) -> bool:
    c = record["checks"]
    agree = record["agreement"]
    return (c["no_5xx"] and c["no_connection_failures"] and c["rss"]["pass"] and record["health_end"]["ok"]
            and c.get("contended_latency", {"pass": True})["pass"] and (not agree["available"] or agree["agree"]))


def plot(record: dict, path) -> None:
    """Latency of every successful request and the server's RSS over time (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .files import save_figure

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    colors = {"free": "#1f77b4", "busy": "#d62728"}
    for phase, color in colors.items():
        if phase not in record["phases"]:
            continue
        rows = [r for r in record["requests"] if r["phase"] == phase and r["outcome"] == "200"
                and r["kind"] != "hostile"]
        if rows:
            ax1.scatter([r["t"] for r in rows], [r["ms"] for r in rows], s=5, color=color, alpha=0.5,
                        label=f"{phase}: 200s ({len(rows)})")
        minutes = record["phases"].get(phase, {}).get("latency_by_minute", [])
        xs = [m["minute"] * 60 + 30 for m in minutes if m["n"]]
        ax1.plot(xs, [m["p95_ms"] for m in minutes if m["n"]], color=color, linewidth=1.5, label=f"{phase} p95/min")
        ax1.plot(xs, [m["p50_ms"] for m in minutes if m["n"]], color=color, linewidth=1, linestyle="--",
                 label=f"{phase} p50/min")
    ax1.set_yscale("log")
    ax1.set_ylabel("request latency, ms (log)")
    ax1.legend(fontsize=7, loc="upper left")
    ax1.grid(alpha=0.3, which="both")
    s = record["samples"]
    ax2.plot([x["t"] for x in s], [x["rss_mb"] for x in s], color="black", label="server RSS (MiB)")
    ax2.set_ylabel("RSS, MiB")
    ax2.set_xlabel("seconds since start")
    twin = ax2.twinx()
    twin.plot([x["t"] for x in s], [x["fds"] for x in s], color="gray", linestyle=":", label="open fds")
    twin.set_ylabel("open fds")
    ax2.axvline(record["checks"]["rss"].get("warmup_s", 0), color="green", linestyle="--", linewidth=1)
    ax2.grid(alpha=0.3)
    opts = record["options"]
    name = (record["server"].get("models") or ["?"])[0]
    fig.suptitle(f"bench soak: {name}, {opts['duration_s']:.0f} s/phase, {opts['clients']} clients, "
                 f"contend={opts['contend']}; {'PASS' if record['pass'] else 'FAIL'}; "
                 f"load avg {record['loadavg_start'][0]:.2f} at start", fontsize=10)
    save_figure(fig, path)
