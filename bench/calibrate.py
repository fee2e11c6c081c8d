"""`thinkling calibrate`: fit a model's thinking profile on a labelled task set.

Runs the direct-answer probe and the reasoning mode on every task, fits the
two logistic models of the ``auto`` cascade ("is the direct answer right?"
from the question alone, and from the question plus the probe's confidence),
sweeps both thresholds against the measured costs, and writes the profile
(JSON next to the model, read by the controller) with its accuracy-latency
curve (JSON + PNG).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
from thinkling.runtime.extras import require
from thinkling.runtime.generate import join_stream
from thinkling.runtime.thinking.profile import ThinkingProfile, probe_signals, profile_path

from . import signals
from .files import save_figure, write_text_atomic
from .modes import RunOptions, follow, run_query, take
from .tasksets import load_tasks, score


@dataclass
class CalibrateOptions(RunOptions):
    """``RunOptions`` plus the probe length and the accuracy ``auto`` may give up."""

    repeats: int = 3
    probe_max_tokens: int = 8
    tolerance_points: float = 1.0  # accuracy points below always reasoning that auto may give up (as --tolerance)
    signals: list[str] | None = None  # candidate signal sets to try (None: every one the model can give)
    folds: int = 5  # cross-validation folds for the held-out comparison
    hidden_components: int = 16  # principal components of the hidden state kept as features


@dataclass
class Sample:
    features: dict[str, float]
    off_correct: bool
    on_correct: bool
    probe_ms: float
    on_ms: float  # reasoning right after the probe, whose prompt prefix is then cached
    reasoning_tokens: int
    on_cold_ms: float | None = None  # reasoning with no probe before it (None: use on_ms)
    hidden: np.ndarray | None = None  # the last prompt token's final hidden state (None: not readable)
    prefill_ms: float = 0.0  # the probe's time to its first token: what a hidden-state gate costs


def predict(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Logistic probabilities for the rows of ``X`` under weights ``w`` (column 0 the bias)."""
    return 1 / (1 + np.exp(-np.clip(X @ w, -60, 60)))


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, steps: int = 3000, lr: float = 0.5) -> np.ndarray:
    """L2-regularised logistic regression by gradient descent on standardised columns.

    Hand-written because it is ~15 lines; scikit-learn would be a large
    dependency for a 10-feature fit. Returns weights for the *raw* columns,
    column 0 being the bias.
    """
    mu, sd = X[:, 1:].mean(0), X[:, 1:].std(0)
    sd[sd == 0] = 1.0
    Z = np.hstack([np.ones((len(X), 1)), (X[:, 1:] - mu) / sd])
    w = np.zeros(Z.shape[1])
    for _ in range(steps):
        p = predict(Z, w)
        grad = Z.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]] / len(y)
        w -= lr * grad
    raw = np.empty_like(w)
    raw[1:] = w[1:] / sd
    raw[0] = w[0] - float((w[1:] * mu / sd).sum())
    return raw


def sweep(scores: np.ndarray, samples: list[Sample], skipped: np.ndarray | None = None,
          gate_after_prefill: bool = False) -> list[dict]:
    """Accuracy and mean latency of ``auto`` at each probe threshold.

    ``skipped`` marks the queries the gate sends straight to reasoning: with a
    gate on the question alone they pay the cold reasoning cost; with a gate on
    the hidden state (``gate_after_prefill``) the probe's prefill, then reasoning
    on its cached prefix. The others pay the probe, plus reasoning when their
    score is under the threshold.
    """
    off = np.array([s.off_correct for s in samples])
    on = np.array([s.on_correct for s in samples])
    probe = np.array([s.probe_ms for s in samples])
    think = np.array([s.on_ms for s in samples])
    cold = np.array([s.on_ms if s.on_cold_ms is None else s.on_cold_ms for s in samples])
    if gate_after_prefill:
        cold = np.array([s.prefill_ms for s in samples]) + think
    skipped = np.zeros(len(samples), bool) if skipped is None else skipped
    curve = []
    for t in np.unique(np.r_[0.0, scores[~skipped], 1.0 + 1e-9]):
        direct = (scores >= t) & ~skipped
        latency = np.where(skipped, cold, probe + np.where(direct, 0.0, think))
        curve.append({"threshold": float(t), "accuracy": float(np.where(direct, off, on).mean()),
                      "mean_latency_ms": float(latency.mean()), "think_rate": float((~direct).mean())})
    return curve


def choose_threshold(curve: list[dict], on_accuracy: float, tolerance: float = 0.01,
                     latency_slack: float = 0.03) -> dict:
    """The fastest point whose accuracy is within ``tolerance`` of always reasoning.

    Points within ``latency_slack`` (a share) of the fastest are treated as
    equally fast (their differences are measurement noise), and the most
    accurate of them wins: otherwise noise alone would pick among near-equal
    points, and the accuracy given up would be paid for nothing.
    """
    ok = [c for c in curve if c["accuracy"] >= on_accuracy - tolerance]
    if not ok:
        return max(curve, key=lambda c: (c["accuracy"], -c["mean_latency_ms"]))
    fastest = min(c["mean_latency_ms"] for c in ok)
    near = [c for c in ok if c["mean_latency_ms"] <= fastest * (1 + latency_slack)]
    return max(near, key=lambda c: (c["accuracy"], -c["mean_latency_ms"]))


def choose_cascade(gate: np.ndarray, scores: np.ndarray, samples: list[Sample], on_accuracy: float,
                   tolerance: float = 0.01, gate_after_prefill: bool = False) -> tuple[list[dict], dict]:
    """Sweep ``skip_below`` over the gate's scores; at each, the best probe threshold.

    Returns one row per ``skip_below`` (its best point, with its skip rate) and
    the chosen row, by the same rule as ``choose_threshold``. ``skip_below`` 0
    (always probe) is among the candidates, so the gate is used only where the
    measured costs say it pays.
    """
    rows = []
    for skip in np.unique(np.r_[0.0, gate, 1.0 + 1e-9]):
        skipped = gate < skip
        best = choose_threshold(sweep(scores, samples, skipped, gate_after_prefill), on_accuracy, tolerance)
        rows.append({"skip_below": float(skip), "skip_rate": float(skipped.mean()), **best})
    return rows, choose_threshold(rows, on_accuracy, tolerance)


def _probe(engine: Engine, row: dict, probe_max_tokens: int) -> tuple[dict, bool, float, object, float]:
    question = row["question"]
    req = GenerationRequest(messages=[Message("user", question)], max_tokens=probe_max_tokens,
                            sampling=SamplingParams(temperature=0.0), think="off", logprobs=True,
                            hidden_state=True)
    t0 = time.perf_counter()
    chunks = list(engine.stream(req))
    ms = (time.perf_counter() - t0) * 1000  # wall time, measured as run_query measures reasoning
    res = join_stream(iter(chunks), engine.model_name)
    return probe_signals(question, chunks), score(row, res.text), ms, chunks[0].hidden, res.timings.ttft_ms


def _measure(engine: Engine, tasks: list[dict], i: int, opts: CalibrateOptions) -> Sample:
    """Task ``i``'s probe, reasoning right after the probe, and reasoning alone.

    Paired and repeated like ``bench modes`` (see ``run_modes``): the two paths
    run back to back in alternating order, each after the previous task's
    question; latencies are medians over ``opts.repeats``.
    """
    t, prev = tasks[i], tasks[i - 1]
    probe, warm, cold, prefill = [], [], [], []
    for r in range(opts.repeats):
        for path in (("probe", "alone") if (i + r) % 2 == 0 else ("alone", "probe")):
            follow(engine, prev)
            if path == "probe":
                feats, off_ok, ms, hidden, ttft = _probe(engine, t, opts.probe_max_tokens)
                probe.append(ms)
                prefill.append(ttft)
                warm.append(run_query(engine, t, "on", opts.max_tokens).latency_ms)
            else:
                on = run_query(engine, t, "on", opts.max_tokens)
                cold.append(on.latency_ms)
    return Sample(feats, off_ok, on.correct, statistics.median(probe), statistics.median(warm), on.tokens,
                  on_cold_ms=statistics.median(cold), hidden=hidden, prefill_ms=statistics.median(prefill))


def calibrate(model: str, tasks: str, opts: CalibrateOptions | None = None, out: str | None = None,
              plot: str | None = None) -> ThinkingProfile:
    """Fit and write the thinking profile of ``model`` on ``tasks``; returns it."""
    opts = opts or CalibrateOptions()
    rows = take(load_tasks(tasks), opts.limit)
    with Engine(model, EngineConfig(n_ctx=1024, n_threads=opts.threads, queue_size=1)) as engine:
        engine.set_profile(None)  # calibrate the raw modes, not a previous profile
        samples = [_measure(engine, rows, i, opts) for i in range(len(rows))]
        speed = engine.describe().speed
        model_path = engine.ref.path
    fitted, chosen, gate_curve, curve, measured = fit_cascade(samples, opts)
    profile = ThinkingProfile(
        weights=fitted.weights, threshold=chosen["threshold"], gate_weights=fitted.gate_weights,
        skip_below=chosen["skip_below"], probe_max_tokens=opts.probe_max_tokens,
        mean_reasoning_tokens=statistics.fmean(s.reasoning_tokens for s in samples),
        mean_answer_tokens=4.0, speed=speed, fitted_on=f"{tasks} (n={len(samples)})", curve=curve,
        gate_curve=gate_curve, projection=fitted.projection, signals=measured)
    target = Path(out) if out else profile_path(model_path)
    write_text_atomic(target, profile.to_json())
    if plot:
        _plot(curve, gate_curve, chosen, measured["on_accuracy"], measured["off_accuracy"], plot)
    return profile


def fit_cascade(samples: list[Sample], opts: CalibrateOptions):
    """Fit every candidate signal set, measure each on held-out queries (``bench.signals``),
    keep the fastest at ``on``'s accuracy, and refit it on every query.

    Returns (the refitted candidate, its chosen point, its gate curve, its threshold
    curve, the measurements: AUROC of each signal set and each candidate's held-out point).
    """
    feats = [s.features for s in samples]
    y = np.array([float(s.off_correct) for s in samples])
    have = [s.hidden is not None for s in samples]
    hidden = np.stack([s.hidden for s in samples]).astype(np.float64) if all(have) else None
    on_acc = float(np.mean([s.on_correct for s in samples]))
    tol = opts.tolerance_points / 100
    k = max(2, min(opts.hidden_components, len(samples) // 4))
    measured: dict = {"on_accuracy": on_acc, "off_accuracy": float(y.mean()), "hidden_components": k,
                      "folds": opts.folds, "auroc": {}, "candidates": {}}
    best_name, best = None, None  # best: (key, gate curve, point, gate scores, probe scores)
    for name in signals.available(hidden, opts.signals):
        gate, scores = signals.held_out_scores(fit_logistic, predict, feats, hidden, y, name, opts.folds, k)
        gate_curve, point = _cascade(name, gate, scores, samples, on_acc, tol)
        gate_sig = "+".join(signals.CANDIDATES[name][0])
        if gate_sig:
            measured["auroc"][gate_sig] = signals.auroc(gate, y)
        measured["auroc"][f"{gate_sig}+probe" if gate_sig else "probe"] = signals.auroc(scores, y)
        measured["candidates"][name] = point
        ok = point["accuracy"] >= on_acc - tol
        key = (ok, -point["mean_latency_ms"], point["accuracy"])
        if best is None or key > best[0]:
            best_name, best = name, (key, gate_curve, point, gate, scores)
    measured["chosen"] = best_name
    if best_name is None:
        raise ValueError(f"no candidate signal set to fit among {opts.signals} (the hidden state could not be read)")
    fitted = signals.refit(fit_logistic, feats, hidden, y, best_name, k)
    after_prefill = "hidden" in signals.CANDIDATES[best_name][0]
    _, gate_curve, chosen, gate, scores = best  # the held-out scores of the loop, not a second fit
    curve = sweep(scores, samples, gate < chosen["skip_below"], after_prefill)
    return fitted, chosen, gate_curve, curve, measured


def _cascade(name: str, gate: np.ndarray, scores: np.ndarray, samples: list[Sample], on_acc: float,
             tol: float) -> tuple[list[dict], dict]:
    """``choose_cascade`` for a candidate; one without a gate probes every query."""
    gate_signals = signals.CANDIDATES[name][0]
    if not gate_signals:
        point = {"skip_below": 0.0, "skip_rate": 0.0, **choose_threshold(sweep(scores, samples), on_acc, tol)}
        return [point], point
    return choose_cascade(gate, scores, samples, on_acc, tol, gate_after_prefill="hidden" in gate_signals)


def _plot(curve: list[dict], gate_curve: list[dict], best: dict, on_acc: float, off_acc: float, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([c["mean_latency_ms"] for c in curve], [c["accuracy"] * 100 for c in curve], ".-",
            label=f"auto by probe threshold (gate skip below {best['skip_below']:.2f})")
    ax.plot([c["mean_latency_ms"] for c in gate_curve], [c["accuracy"] * 100 for c in gate_curve], "x",
            color="tab:green", label="best point per gate skip level")
    ax.scatter([best["mean_latency_ms"]], [best["accuracy"] * 100], s=90, color="red", zorder=3,
               label=f"chosen: skip below {best['skip_below']:.2f}, t={best['threshold']:.2f}")
    ax.axhline(on_acc * 100, ls="--", color="gray", label="always reason")
    ax.axhline(off_acc * 100, ls=":", color="gray", label="always direct")
    ax.set_xlabel("mean latency per query (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out)


def register(sub) -> None:
    d = CalibrateOptions()  # the flags' defaults are the library's
    p = sub.add_parser("calibrate", help="fit a model's adaptive-thinking profile on a labelled task set")
    p.add_argument("--model", required=True)
    p.add_argument("--tasks", default="arith-calib", help="JSONL {question, answer} or a built-in set name")
    p.add_argument("--out", default=None, help="profile path (default: <model file>.thinking.json)")
    p.add_argument("--plot", default=None, help="PNG of the accuracy-latency curve")
    p.add_argument("--probe-max-tokens", type=int, default=d.probe_max_tokens)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--limit", type=int, default=d.limit)
    p.add_argument("--repeats", type=int, default=d.repeats, help="runs per task and path; latency is the median")
    p.add_argument("--signals", default=None,
                   help=f"candidate gates to compare, comma-separated from {', '.join(signals.CANDIDATES)} "
                        "(default: every one the model can give)")
    p.add_argument("--hidden-components", type=int, default=d.hidden_components,
                   help="principal components of the hidden state kept as features")
    p.add_argument("--tolerance", type=float, default=d.tolerance_points,
                   help=f"accuracy points below always-reasoning that auto may give up for speed "
                        f"(default {d.tolerance_points:g})")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    if args.plot:  # fail before the calibration runs, not after it
        require("thinkling calibrate --plot", "bench", "matplotlib")
    opts = CalibrateOptions(max_tokens=args.max_tokens, threads=args.threads, limit=args.limit,
                            repeats=max(1, args.repeats), probe_max_tokens=args.probe_max_tokens,
                            tolerance_points=args.tolerance, hidden_components=args.hidden_components,
                            signals=[x.strip() for x in args.signals.split(",")] if args.signals else None)
    unknown = set(opts.signals or ()) - set(signals.CANDIDATES)
    if unknown:
        print(f"error: unknown --signals {', '.join(sorted(unknown))} (choose from {', '.join(signals.CANDIDATES)})",
              file=sys.stderr)
        return 2
    prof = calibrate(args.model, args.tasks, opts, args.out, args.plot)
    best = next(c for c in prof.gate_curve if c["skip_below"] == prof.skip_below)
    aurocs = ", ".join(f"{k} {v:.2f}" for k, v in prof.signals.get("auroc", {}).items() if v is not None)
    print(f"signals: {prof.signals.get('chosen')} gate (held-out AUROC of 'the direct answer is right': {aurocs})")
    print(f"gate skip below {prof.skip_below:.3f} (skips the probe on {best['skip_rate'] * 100:.0f}%), "
          f"probe threshold {prof.threshold:.3f}: accuracy {best['accuracy'] * 100:.1f}%, "
          f"mean latency {best['mean_latency_ms']:.1f} ms, think rate {best['think_rate'] * 100:.0f}% "
          f"({prof.fitted_on})")
    return 0
