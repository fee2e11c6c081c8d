"""bench statistics and verdict on recorded samples: hand-computable
percentiles and the pass/fail edges. No timing, no model."""

from __future__ import annotations

import math

import pytest

from thinkling.bench.stats import check_p95, percentile, ratio_of_medians, summarize, verdict


def test_percentile_linear_interpolation_by_hand():
    xs = [7, 3, 10, 1, 5, 2, 9, 4, 8, 6]  # 1..10, unsorted on purpose
    assert percentile(xs, 0) == 1
    assert percentile(xs, 100) == 10
    assert percentile(xs, 50) == pytest.approx(5.5)  # rank 4.5: halfway between 5 and 6
    assert percentile(xs, 95) == pytest.approx(9.55)  # rank 8.55: 9 + 0.55 * (10 - 9)
    assert percentile(xs, 99) == pytest.approx(9.91)  # rank 8.91
    assert percentile([10, 20], 95) == pytest.approx(19.5)
    assert percentile([42], 99) == 42


def test_percentile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    xs = [12.5, 3.1, 99.0, 45.2, 45.2, 7.7, 0.4, 61.0, 18.8]
    for p in (1, 25, 50, 75, 90, 95, 99):
        assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))


def test_percentile_rejects_bad_input():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1, 2], 101)


def test_summarize_by_hand_and_missing_values():
    s = summarize([4, None, 1, 3, float("nan"), 2])
    assert s.n == 4
    assert (s.mean, s.p50, s.min, s.max) == (2.5, 2.5, 1, 4)
    assert s.iqr == pytest.approx(1.5)  # p75 3.25 - p25 1.75
    assert s.rel_iqr == pytest.approx(0.6)
    assert s.stdev == pytest.approx(math.sqrt(5 / 3))
    assert summarize([None, None]) is None
    assert summarize([5]).stdev == 0.0
    assert set(s.to_dict()) == {"n", "mean", "p50", "p95", "p99", "min", "max", "stdev", "iqr", "rel_iqr"}


def test_ratio_of_medians():
    assert ratio_of_medians([2, 4, 6], [1, 2, 3]) == pytest.approx(2.0)
    assert ratio_of_medians([1], []) is None
    assert ratio_of_medians([1], [0]) is None


@pytest.mark.parametrize("values,target,passed", [
    ([200.0] * 20, 200, True),  # p95 exactly at the target passes
    ([0.0, 200.0], 200, True),  # p95 = 190
    ([0.0, 220.0], 200, False),  # p95 = 209
    ([100.0] * 19 + [201.0], 200, True),  # one slow run in 20: p95 = 100 + 0.05 * 101 = 105.05
    ([100.0] * 18 + [300.0] * 2, 200, False),  # two slow runs in 20: p95 lands on 300
    ([200.001], 200, False),
    ([], 200, False),  # no evidence never passes
    ([None, None], 200, False),
])
def test_check_p95_edges(values, target, passed):
    c = check_p95("ttft_ms", values, target)
    assert c.passed is passed
    assert c.to_dict()["pass"] is passed


def test_check_p95_reports_the_p95():
    c = check_p95("ttft_ms", [100.0] * 19 + [201.0], 200)
    assert c.p95_ms == pytest.approx(105.05)


def test_verdict_needs_both_metrics():
    fast = [50.0] * 10
    slow = [50.0] * 8 + [500.0] * 2
    v = verdict({"ttft_ms": fast, "short_answer_ms": fast}, 200)
    assert v["pass"] is True
    v = verdict({"ttft_ms": fast, "short_answer_ms": slow}, 200)
    assert v["pass"] is False
    assert [c["pass"] for c in v["checks"]] == [True, False]
    assert verdict({"ttft_ms": fast}, 200)["pass"] is False  # short answer missing
