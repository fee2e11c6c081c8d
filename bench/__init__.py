"""thinkling benchmarks: ``bench latency`` (this package's latency harness:
TTFT, short-answer and end-to-end latency per profile against a target) and
``bench modes`` (accuracy/latency of the thinking modes). See docs/bench.md."""
