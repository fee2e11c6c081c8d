"""Statistics of `bench modes` and the fit/sweep of `thinkling calibrate` on recorded samples."""

import numpy as np
import pytest

from thinkling.bench.calibrate import Sample, choose_cascade, choose_threshold, fit_logistic, sweep
from thinkling.bench import modes
from thinkling.bench.modes import Outcome, median_outcome, oracle, paired_difference, random_gating, summarize
from thinkling.bench.tasksets import score


def outcome(mode, correct, ms, tokens=1, thought=False):
    return Outcome("q", "1", mode, "1" if correct else "2", 0, correct, ms, ms / 2, ms, tokens, thought)


def test_the_number_check_reads_the_final_integer():
    assert score({"answer": "76"}, "The answer is 76") and score({"answer": "76", "check": "number"}, "76")
    assert not score({"answer": "76"}, "76 or 77") and not score({"answer": "1"}, "")


def test_fit_logistic_separates_a_learnable_signal():
    rng = np.random.default_rng(0)
    conf = rng.normal(size=400)
    y = (conf + 0.3 * rng.normal(size=400) > 0).astype(float)
    X = np.c_[np.ones(400), conf, rng.normal(size=400)]  # second column is noise
    w = fit_logistic(X, y, l2=0.1)
    p = 1 / (1 + np.exp(-(X @ w)))
    assert ((p > 0.5) == (y > 0.5)).mean() > 0.85
    assert abs(w[1]) > 5 * abs(w[2])


def test_sweep_and_threshold_choice():
    samples = [Sample({}, off_ok, True, 10.0, 100.0, 20) for off_ok in (True, True, False, False)]
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    curve = sweep(scores, samples)
    best = choose_threshold(curve, on_accuracy=1.0, tolerance=0.0)
    # the fastest point that keeps 100%: answer directly exactly the two right ones
    assert best["accuracy"] == 1.0 and best["think_rate"] == 0.5
    assert best["mean_latency_ms"] == pytest.approx(10 + 100 / 2)
    assert 0.2 < best["threshold"] <= 0.8


def test_sweep_charges_skipped_queries_the_cold_reasoning_cost_and_no_probe():
    samples = [Sample({}, False, True, 10.0, 100.0, 20, on_cold_ms=104.0),
               Sample({}, True, True, 10.0, 100.0, 20, on_cold_ms=104.0)]
    scores = np.array([0.9, 0.9])  # the probe is (wrongly) confident on both
    curve = sweep(scores, samples, skipped=np.array([True, False]))
    direct = next(c for c in curve if c["threshold"] == 0.0)
    assert direct["accuracy"] == 1.0 and direct["think_rate"] == 0.5  # the skipped one reasons
    assert direct["mean_latency_ms"] == pytest.approx((104 + 10) / 2)


def test_cascade_uses_the_gate_only_where_it_pays():
    # two easy queries (direct right), two hard ones (direct wrong); the probe is
    # informative (scores) and the gate too (gate): skipping the probe on the
    # hard ones saves its 10 ms, with the same accuracy.
    samples = [Sample({}, ok, True, 10.0, 100.0, 20, on_cold_ms=101.0) for ok in (True, True, False, False)]
    scores, gate = np.array([0.9, 0.8, 0.2, 0.1]), np.array([0.9, 0.9, 0.1, 0.1])
    rows, best = choose_cascade(gate, scores, samples, on_accuracy=1.0, tolerance=0.0)
    assert best["accuracy"] == 1.0 and best["skip_rate"] == 0.5 and 0.1 < best["skip_below"] <= 0.9
    assert best["mean_latency_ms"] == pytest.approx((10 + 10 + 101 + 101) / 4)
    assert rows[0]["skip_below"] == 0.0 and rows[0]["skip_rate"] == 0.0  # always probing is a candidate
    # a gate that cannot tell easy from hard is not used: skipping would lose accuracy
    _, best = choose_cascade(np.full(4, 0.5), scores, samples, on_accuracy=1.0, tolerance=0.0)
    assert best["skip_rate"] == 0.0


def test_median_outcome_and_rotated_passes(monkeypatch):
    runs = [outcome("on", True, ms) for ms in (9.0, 1.0, 5.0)]
    m = median_outcome(runs)
    assert (m.latency_ms, m.ttft_ms, m.answer) == (5.0, 2.5, "1")
    calls = []

    def fake_run_query(engine, task, mode, max_tokens):
        calls.append((task["question"], mode, max_tokens))
        return outcome(mode, True, float(len(calls)))

    monkeypatch.setattr(modes, "run_query", fake_run_query)
    tasks = [{"question": q, "answer": "1"} for q in ("a", "b")]
    out, unstable = modes.run_modes(None, tasks, ("off", "on", "auto"), 8, repeats=2)
    # each measured run follows a one-token direct answer to the previous question
    assert calls[0::2] == [("b", "off", 1)] * 6 + [("a", "off", 1)] * 6
    assert [m for _, m, _ in calls[1::2]] == ["off", "on", "auto", "on", "auto", "off",
                                              "on", "auto", "off", "auto", "off", "on"]
    assert {q for q, _, n in calls[1::2] if n == 8} == {"a", "b"}
    # query "a": off ran as calls 2 and 12 -> median 7; query "b": auto ran as 16 and 20 -> 18
    assert out["off"][0].latency_ms == 7.0 and out["auto"][1].latency_ms == 18.0 and unstable == 0


def test_random_gating_is_the_expectation_and_oracle_the_cheapest_correct():
    off = [outcome("off", True, 10), outcome("off", False, 10)]
    on = [outcome("on", True, 100, 20, True), outcome("on", True, 100, 20, True)]
    r = random_gating(off, on, 0.5)
    assert r["accuracy"] == pytest.approx(0.75) and r["mean_latency_ms"] == pytest.approx(55)
    o = oracle(off, on)
    assert o["accuracy"] == 1.0 and o["mean_latency_ms"] == pytest.approx(55) and o["think_rate"] == 0.5


def test_paired_difference_interval_excludes_zero_only_for_a_real_shift():
    a = [outcome("on", True, 10.0 + (i % 7)) for i in range(100)]
    faster = [outcome("auto", True, o.latency_ms - 1.0 + 0.1 * (i % 3)) for i, o in enumerate(a)]
    d = paired_difference(a, faster)
    assert d["mean_ms"] == pytest.approx(-0.9, abs=0.01) and d["ci95_ms"][1] < 0
    noise = [outcome("auto", True, o.latency_ms + (1.0 if i % 2 else -1.0)) for i, o in enumerate(a)]
    lo, hi = paired_difference(a, noise)["ci95_ms"]
    assert lo < 0 < hi


def test_summarize_percentiles():
    s = summarize("off", [outcome("off", i % 2 == 0, float(ms)) for i, ms in enumerate(range(1, 101))])
    assert s["accuracy"] == 0.5 and s["p50_ms"] == pytest.approx(50.5) and s["p95_ms"] == pytest.approx(95.05)


def test_pareto_plot_labels_do_not_collide(monkeypatch, tmp_path):
    """Rows with equal or near-equal (latency, accuracy) — as in the committed
    arith-student run, where off, random@0.00 and oracle coincide — must still
    get one readable label each: no two texts of the figure overlap."""
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text

    from thinkling.bench import modes

    def row(mode, ms, acc, simulated=False):
        return {"mode": mode, "mean_latency_ms": ms, "accuracy": acc, **({"simulated": True} if simulated else {})}

    rows = [row("off", 7.3, 0.015), row("on", 22.3, 0.005), row("post", 21.1, 0.005), row("auto", 6.7, 0.015),
            row("random@0.00", 7.3, 0.015, True), row("oracle", 7.3, 0.015, True)]
    figs = []
    monkeypatch.setattr(modes, "save_figure", lambda fig, out: figs.append(fig))
    modes.pareto_plot(rows, tmp_path / "p.png", "arith-student on arith-test: accuracy vs latency")
    (fig,) = figs
    fig.tight_layout()
    fig.canvas.draw()  # the legend is laid out at draw time
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    for r in rows:  # every mode is named somewhere
        assert any(r["mode"] in t.get_text() for t in texts), r["mode"]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    clashes = [(a, b) for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1:] if ba.overlaps(bb)]
    import matplotlib.pyplot as plt

    plt.close(fig)
    assert clashes == []
