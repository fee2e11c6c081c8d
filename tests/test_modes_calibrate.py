"""Statistics of `bench modes` and the fit/sweep of `thinkling calibrate` on recorded samples."""

import numpy as np
import pytest

from bench.calibrate import Sample, choose_threshold, fit_logistic, sweep
from bench.modes import Outcome, is_correct, oracle, random_gating, summarize


def outcome(mode, correct, ms, tokens=1, thought=False):
    return Outcome("q", "1", mode, "1" if correct else "2", 0, correct, ms, ms / 2, ms, tokens, thought)


def test_is_correct_reads_the_final_integer():
    assert is_correct("The answer is 76", 76) and is_correct("76", "76")
    assert not is_correct("76 or 77", 76) and not is_correct("", 1)


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


def test_random_gating_is_the_expectation_and_oracle_the_cheapest_correct():
    off = [outcome("off", True, 10), outcome("off", False, 10)]
    on = [outcome("on", True, 100, 20, True), outcome("on", True, 100, 20, True)]
    r = random_gating(off, on, 0.5)
    assert r["accuracy"] == pytest.approx(0.75) and r["mean_latency_ms"] == pytest.approx(55)
    o = oracle(off, on)
    assert o["accuracy"] == 1.0 and o["mean_latency_ms"] == pytest.approx(55) and o["think_rate"] == 0.5


def test_summarize_percentiles():
    s = summarize("off", [outcome("off", i % 2 == 0, float(ms)) for i, ms in enumerate(range(1, 101))])
    assert s["accuracy"] == 0.5 and s["p50_ms"] == pytest.approx(50.5) and s["p95_ms"] == pytest.approx(95.05)


def test_pareto_plot_labels_do_not_collide(monkeypatch, tmp_path):
    """Rows with equal or near-equal (latency, accuracy) — as in the committed
    arith-student run, where off, random@0.00 and oracle coincide — must still
    get one readable label each: no two texts of the figure overlap."""
    pytest.importorskip("matplotlib")
    from matplotlib.text import Text

    from bench import modes

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
