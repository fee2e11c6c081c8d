"""Statistics and the verdict: pure functions over lists of samples.

Percentiles use linear interpolation between closest ranks (numpy's default
``"linear"`` method, Excel's PERCENTILE.INC): for sorted ``x`` of length ``n``
the p-th percentile sits at rank ``p/100 * (n - 1)``. With 20 runs, p95 lies
between the 19th and 20th sample and p99 is nearly the maximum; the record
keeps ``n`` so readers can judge how much a tail percentile means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import fmean, stdev


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``values`` by linear interpolation."""
    if not values:
        raise ValueError("percentile of an empty list")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    xs = sorted(values)
    rank = p / 100 * (len(xs) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


@dataclass(frozen=True)
class Summary:
    """Location and spread of one metric over the timed runs."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float
    stdev: float  # sample standard deviation; 0 for a single sample
    iqr: float  # p75 - p25
    rel_iqr: float  # iqr / p50: spread relative to the median (0 when p50 is 0)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def summarize(values: list[float | None]) -> Summary | None:
    """Summary of the non-missing ``values``; None when there are none."""
    xs = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not xs:
        return None
    p50 = percentile(xs, 50)
    iqr = percentile(xs, 75) - percentile(xs, 25)
    return Summary(
        n=len(xs), mean=fmean(xs), p50=p50, p95=percentile(xs, 95), p99=percentile(xs, 99),
        min=min(xs), max=max(xs), stdev=stdev(xs) if len(xs) > 1 else 0.0,
        iqr=iqr, rel_iqr=iqr / p50 if p50 else 0.0,
    )


def ratio_of_medians(numerator: list[float | None], denominator: list[float | None]) -> float | None:
    """``median(numerator) / median(denominator)``; None if either side is empty or zero."""
    a, b = summarize(numerator), summarize(denominator)
    if a is None or b is None or b.p50 == 0:
        return None
    return a.p50 / b.p50


@dataclass(frozen=True)
class Check:
    """One latency metric's p95 against the target."""

    metric: str
    p95_ms: float | None
    target_ms: float
    passed: bool

    def to_dict(self) -> dict:
        return {"metric": self.metric, "p95_ms": None if self.p95_ms is None else round(self.p95_ms, 3),
                "target_ms": self.target_ms, "pass": self.passed}


def check_p95(metric: str, values: list[float | None], target_ms: float) -> Check:
    """Pass when the p95 is at or under ``target_ms``. No samples is a fail:
    a verdict never passes on missing evidence."""
    s = summarize(values)
    p95 = None if s is None else s.p95
    return Check(metric, p95, target_ms, p95 is not None and p95 <= target_ms)


VERDICT_METRICS = ("ttft_ms", "short_answer_ms")


def verdict(samples_by_metric: dict[str, list[float | None]], target_ms: float) -> dict:
    """Pass/fail of one profile: every metric in ``VERDICT_METRICS`` must have
    its p95 at or under ``target_ms``."""
    checks = [check_p95(m, samples_by_metric.get(m, []), target_ms) for m in VERDICT_METRICS]
    return {"pass": all(c.passed for c in checks), "target_ms": target_ms,
            "checks": [c.to_dict() for c in checks]}
