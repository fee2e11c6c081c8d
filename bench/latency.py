"""``bench latency`` as a library: ``run_latency(LatencyConfig(...)) -> record``.

Per profile: load the model with the profile's settings, warm up every prompt
class, then time ``runs`` rounds. A round runs every class once; with
``baseline`` each class runs on thinkling and on raw llama-cpp-python back to
back, the order alternating between rounds (A/B, then B/A) so neither side
always runs on the other's warm caches. Both sides start every run from an
empty KV cache (cold prefix).

The record is plain JSON-ready data: config, fingerprint, per-profile
summaries, checks, verdict, baseline overhead, and every sample.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from thinkling.runtime.errors import ContextLengthExceeded

from . import fingerprint as fp
from .bandwidth import decode_share, read_bandwidth_gb_s, weights_bytes_per_token
from .profiles import Profile, resolve_profiles
from .prompts import PromptCase, load_cases
from .runners.base import SHORT_ANSWER_TOKENS, Sample
from .stats import check_p95, ratio_of_medians, summarize, verdict

SCHEMA = "thinkling.bench.latency/1"
METRICS = ("ttft_ms", "short_answer_ms", "e2e_ms", "first_token_ms", "prefill_tok_s", "decode_tok_s")

DEFINITIONS = {
    "load_ms": "Engine construction: open the GGUF (mmap) and create the context; the page cache is "
               "warm after the first load in a process",
    "ttft_ms": "request start -> first chunk with visible text or reasoning, measured by the caller",
    "first_token_ms": "request start -> first chunk carrying a token (visible or not)",
    "short_answer_ms": f"request start -> {SHORT_ANSWER_TOKENS}th generated token, or the end if the "
                       "answer is shorter",
    "e2e_ms": "request start -> end of the stream",
    "prefill_tok_s": "evaluated prompt tokens / first_token_ms (includes sampling the first token)",
    "decode_tok_s": "(completion tokens - 1) / (end - first token)",
    "cache": "cold prefix: every run starts from an empty KV cache (in process: reset; endpoint: a nonce "
             "in front of the user message)",
    "percentiles": "linear interpolation between closest ranks (numpy 'linear')",
    "verdict": "pass when p95 TTFT and p95 short-answer latency are <= target_ms over the verdict classes",
    "overhead": "median thinkling / median baseline; decode compares ms per token (> 1: thinkling slower)",
    "memory": "weights_bytes_per_token: the GGUF's tensor bytes, which one decode step reads (KV cache "
              "excluded); read_bandwidth_gb_s: best of 3 parallel numpy reads of 256 MiB per thread with the "
              "profile's threads; per class, read_gb_s = decode tok/s p50 x bytes per token and share = "
              "read_gb_s / read_bandwidth_gb_s",
}


@dataclass
class LatencyConfig:
    """Options of ``bench latency``; the CLI flags have the same names and defaults."""

    model: str | None = None
    profile: str = "laptop"
    prompts: str | None = None
    runs: int = 20
    warmup: int = 2
    target_ms: float = 200.0
    endpoint: str | None = None
    baseline: bool = False
    max_tokens: int | None = None  # overrides every class's own max_tokens
    think: str = "off"
    speculative: str = "off"  # "ngram": prompt-lookup speculative decoding (greedy requests)
    label: str | None = None  # shown in the title and kept in the record (e.g. "emulated aarch64")

    def validate(self) -> None:
        if self.runs < 1:
            raise ValueError("runs must be at least 1")
        if self.warmup < 0:
            raise ValueError("warmup must be >= 0")
        if self.target_ms <= 0:
            raise ValueError("target_ms must be > 0")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if self.endpoint and self.baseline:
            raise ValueError("--baseline runs in process; it cannot be combined with --endpoint")


Progress = Callable[[str], None]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _try_run(runner, case: PromptCase, i: int, skipped: dict[str, str]) -> Sample | None:
    """Run ``case``; a prompt that does not fit the model's context skips the
    class for the rest of the profile (recorded with the reason) instead of
    ending the benchmark."""
    if case.name in skipped:
        return None
    try:
        return runner.run(case, i)
    except ContextLengthExceeded as e:
        skipped[case.name] = e.message
        return None


def _warm(runner, cases: list[PromptCase], n: int, skipped: dict[str, str]) -> None:
    for case in cases:
        for _ in range(n):
            _try_run(runner, case, -1, skipped)


def _timed(runners: list, cases: list[PromptCase], runs: int, progress: Progress,
           loads: list, skipped: dict[str, str]) -> list[Sample]:
    """``runs`` rounds; ``loads`` gets the 1-minute load average after each round."""
    samples: list[Sample] = []
    for i in range(runs):
        order = runners if i % 2 == 0 else runners[::-1]
        for case in cases:
            for runner in order:
                if (sample := _try_run(runner, case, i, skipped)) is not None:
                    samples.append(sample)
        la = fp.load_average()
        loads.append(la[0] if la else None)
        progress(f"  round {i + 1}/{runs} done (load {loads[-1]})")
    return samples


def _run_local_profile(cfg: LatencyConfig, profile: Profile, cases: list[PromptCase],
                       progress: Progress, model_facts: dict) -> tuple[dict, list[Sample]]:
    from .runners.baseline import LlamaBaselineRunner
    from .runners.engine import EngineRunner

    original_cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    rec: dict = {"name": profile.name, "runner": "thinkling", "settings": profile.to_dict(),
                 "load_average": {"start": fp.load_average()}, "skipped": {}}
    runners: list = []
    try:
        # Linux resets the peak per profile; elsewhere it is the process's lifetime peak.
        rec["peak_rss_scope"] = "profile" if fp.reset_peak_rss() else "process"
        # What the process already held (earlier profiles' freed-but-kept heap is in the peak too)
        rec["rss_at_start_bytes"] = fp.current_rss_bytes()
        progress(f"[{profile.name}] loading {cfg.model or 'the default model'}")
        thinkling = EngineRunner(cfg.model, profile, max_tokens=cfg.max_tokens, think=cfg.think,
                                 speculative=cfg.speculative)
        runners.append(thinkling)
        if not model_facts:
            model_facts.update(fp.model_fingerprint(thinkling.model_info(), thinkling.engine.ref.file_entry))
        # The baseline reuses thinkling's prompt tokens and output length,
        # which a warm-up run provides: with --baseline, warm up at least once.
        warm = max(cfg.warmup, 1 if cfg.baseline else 0)
        progress(f"[{profile.name}] warm-up: {warm} run(s) per class")
        _warm(thinkling, cases, warm, rec["skipped"])
        rec["load_ms"] = thinkling.load_ms
        rec["peak_rss_bytes"] = fp.peak_rss_bytes()  # thinkling alone: load + warm-up (+ timed runs below)
        if cfg.baseline:
            baseline = LlamaBaselineRunner(str(thinkling.engine.ref.path), profile, n_ctx=thinkling.n_ctx)
            runners.append(baseline)
            for case in cases:
                if case.name not in rec["skipped"]:
                    baseline.set_work(case, thinkling.prompt_tokens(case), thinkling.completion_tokens(case))
            _warm(baseline, cases, warm, rec["skipped"])
            rec["baseline_load_ms"] = baseline.load_ms
        progress(f"[{profile.name}] timing {cfg.runs} round(s) of {len(cases)} class(es)"
                 + (" x 2 runners, interleaved" if cfg.baseline else ""))
        samples = _timed(runners, cases, cfg.runs, progress, rec["load_average"].setdefault("rounds", []),
                         rec["skipped"])
        for name, why in rec["skipped"].items():
            progress(f"[{profile.name}] skipped class {name!r}: {why}")
        if cfg.baseline:
            rec["peak_rss_with_baseline_bytes"] = fp.peak_rss_bytes()
        else:
            rec["peak_rss_bytes"] = fp.peak_rss_bytes()
        # the wall decode runs against, measured with the profile's threads and pinning
        rec["memory"] = {"weights_bytes_per_token": weights_bytes_per_token(thinkling.engine.ref.path),
                         "read_bandwidth_gb_s": round(read_bandwidth_gb_s(profile.n_threads), 2),
                         "threads": profile.n_threads}
    finally:
        for r in runners:
            r.close()
        if original_cpus is not None and os.sched_getaffinity(0) != original_cpus:
            os.sched_setaffinity(0, original_cpus)  # the phone profile pinned the process
    rec["load_average"]["end"] = fp.load_average()
    return rec, samples


def _run_endpoint(cfg: LatencyConfig, cases: list[PromptCase], progress: Progress,
                  model_facts: dict) -> tuple[dict, list[Sample]]:
    from .runners.endpoint import EndpointRunner

    runner = EndpointRunner(cfg.endpoint, model=cfg.model, max_tokens=cfg.max_tokens, think=cfg.think)
    rec: dict = {"name": "endpoint", "runner": "endpoint", "settings": {"endpoint": cfg.endpoint},
                 "load_ms": None, "peak_rss_bytes": None, "skipped": {},
                 "load_average": {"start": fp.load_average()},
                 "assumptions": ["remote server: its own settings; times include the network"]}
    try:
        server = runner.server_info()
        first = (server.get("models") or [{}])[0]
        model_facts.update({"name": cfg.model or first.get("id"),
                            "quantization": (first.get("meta") or {}).get("quantization"), "server": server})
        progress(f"[endpoint] warm-up: {cfg.warmup} run(s) per class against {cfg.endpoint}")
        _warm(runner, cases, cfg.warmup, rec["skipped"])
        samples = _timed([runner], cases, cfg.runs, progress, rec["load_average"].setdefault("rounds", []),
                         rec["skipped"])
    finally:
        runner.close()
    rec["load_average"]["end"] = fp.load_average()
    return rec, samples


def _metric_summaries(samples: list[Sample]) -> dict:
    out = {}
    for m in METRICS:
        s = summarize([getattr(x, m) for x in samples])
        out[m] = s.to_dict() if s else None
    return out


def summarize_profile(rec: dict, samples: list[Sample], cases: list[PromptCase], target_ms: float) -> dict:
    """Fill ``rec`` with per-class summaries, checks, overhead and the verdict."""
    mine = [s for s in samples if s.profile == rec["name"]]
    primary = rec["runner"]
    runners = [primary] + sorted({s.runner for s in mine} - {primary})
    classes = []
    skipped = rec.get("skipped") or {}
    for case in cases:
        if case.name in skipped:
            classes.append({"name": case.name, "verdict_class": case.verdict, "skipped": skipped[case.name],
                            "prompt_tokens": None, "runners": {}, "checks": []})
            continue
        by_runner = {r: [s for s in mine if s.prompt_class == case.name and s.runner == r] for r in runners}
        head = by_runner.get(primary, [])
        row = {"name": case.name, "verdict_class": case.verdict,
               "prompt_tokens": head[0].prompt_tokens if head else None,
               "completion_tokens": summarize([s.completion_tokens for s in head]).p50 if head else None,
               "runners": {r: _metric_summaries(v) for r, v in by_runner.items()},
               "checks": [check_p95(m, [getattr(s, m) for s in head], target_ms).to_dict()
                          for m in ("ttft_ms", "short_answer_ms")]}
        base = by_runner.get("llama-cpp-python")
        if base:
            row["overhead"] = overhead(head, base)
        mem = rec.get("memory")
        if mem and head:
            row["memory"] = decode_share(summarize([s.decode_tok_s for s in head]).p50,
                                         mem["weights_bytes_per_token"], mem["read_bandwidth_gb_s"])
        classes.append(row)
    rec["classes"] = classes
    # judged on the verdict classes that ran; if every one was skipped, there is no evidence: fail
    judged = {c.name for c in cases if c.verdict} or {c.name for c in cases}
    judged -= set(skipped)
    pool = [s for s in mine if s.runner == primary and s.prompt_class in judged]
    rec["verdict"] = verdict({m: [getattr(s, m) for s in pool] for m in ("ttft_ms", "short_answer_ms")},
                             target_ms)
    rec["verdict"]["classes"] = sorted(judged)
    return rec


def overhead(ours: list[Sample], base: list[Sample]) -> dict:
    """thinkling vs the baseline on the same class: ratios of medians (> 1: thinkling slower)."""
    def ms_per_token(xs):
        return [1000 / s.decode_tok_s if s.decode_tok_s else None for s in xs]

    r = {
        "ttft_ratio": ratio_of_medians([s.ttft_ms for s in ours], [s.ttft_ms for s in base]),
        "first_token_ratio": ratio_of_medians([s.first_token_ms for s in ours], [s.first_token_ms for s in base]),
        "decode_ratio": ratio_of_medians(ms_per_token(ours), ms_per_token(base)),
        "e2e_ratio": ratio_of_medians([s.e2e_ms for s in ours], [s.e2e_ms for s in base]),
        "pairs": min(len(ours), len(base)),
        # greedy on the same tokens: the baseline's text starts with thinkling's
        # (thinkling hides a matched stop string, the baseline was given none)
        "same_output": all(b.text.startswith(a.text) for a, b in zip(ours, base)),
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


def run_latency(config: LatencyConfig, progress: Progress | None = None,
                command: str | None = None) -> dict:
    """Run the latency benchmark and return its JSON-ready record; ``command``
    (the command line that asked for it) is recorded to reproduce it."""
    config.validate()
    progress = progress or (lambda _msg: None)
    cases = load_cases(config.prompts)
    record: dict = {"schema": SCHEMA, "command": command, "started_at": _now(), "config": asdict(config),
                    "definitions": DEFINITIONS, "load_average": {"start": fp.load_average()},
                    "fingerprint": {"machine": fp.machine_fingerprint(), "model": {}},
                    "prompt_classes": [c.to_dict() for c in cases]}
    model_facts = record["fingerprint"]["model"]
    profiles, samples = [], []
    t0 = time.perf_counter()
    if config.endpoint:
        rec, got = _run_endpoint(config, cases, progress, model_facts)
        profiles.append(rec)
        samples += got
    else:
        for profile in resolve_profiles(config.profile):
            rec, got = _run_local_profile(config, profile, cases, progress, model_facts)
            rec["emulated"], rec["assumptions"] = profile.emulated, profile.assumptions
            profiles.append(rec)
            samples += got
    record["profiles"] = [summarize_profile(p, samples, cases, config.target_ms) for p in profiles]
    record["load_average"]["end"] = fp.load_average()
    record["finished_at"] = _now()
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    record["samples"] = [s.to_dict() for s in samples]
    return record
