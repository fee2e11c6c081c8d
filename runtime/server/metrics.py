"""Prometheus metrics on the server's own registry (never the global one, so
two apps in one process, e.g. in tests, do not collide)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Route templates used as labels; anything else is "other" (keeps label sets bounded).
ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics",
             "/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/ps", "/api/version")  # Ollama's

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def endpoint_label(path: str) -> str:
    if path in ENDPOINTS:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{model}"
    return "other"


class _EngineCollector:
    """Reads the engine at scrape time: queue depth, load state, outcomes."""

    def __init__(self, get_engine: Callable[[], object | None]):
        self._get_engine = get_engine

    def collect(self):
        engine = self._get_engine()
        yield GaugeMetricFamily("thinkling_model_loaded", "1 once the model is loaded",
                                value=1 if engine is not None else 0)
        yield GaugeMetricFamily("thinkling_queue_depth", "requests waiting plus the one running",
                                value=engine.queue_depth if engine is not None else 0)
        outcomes = CounterMetricFamily("thinkling_engine_generations",
                                       "generations finished by the engine, by outcome", labels=["outcome"])
        for outcome, n in dict(getattr(engine, "stats", {}) or {}).items():
            outcomes.add_metric([outcome], n)
        yield outcomes


class Metrics:
    def __init__(self, get_engine: Callable[[], object | None]):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("thinkling_http_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("thinkling_request_duration_seconds",
                                 "generation requests, arrival to last byte", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.ttft = Histogram("thinkling_ttft_seconds", "submission to first token (queue included)",
                              ["endpoint"], buckets=_TTFT_BUCKETS, registry=r)
        self.prompt_tokens = Counter("thinkling_prompt_tokens", "prompt tokens processed", registry=r)
        self.completion_tokens = Counter("thinkling_completion_tokens", "tokens generated", registry=r)
        self.disconnects = Counter("thinkling_client_disconnects",
                                   "generations cancelled because the client went away", registry=r)
        r.register(_EngineCollector(get_engine))

    def observe_generation(self, endpoint: str, timings, seconds: float) -> None:
        self.latency.labels(endpoint).observe(seconds)
        if timings is not None:
            if timings.completion_tokens:
                self.ttft.labels(endpoint).observe(timings.ttft_ms / 1000)
            self.prompt_tokens.inc(timings.prompt_tokens)
            self.completion_tokens.inc(timings.completion_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)
