"""`thinkling calibrate`: fit a model's thinking profile on a labelled task set.

Runs the direct-answer probe and the reasoning mode on every task, fits a
logistic model "is the direct answer right?" over query features and probe
confidence, sweeps the threshold, and writes the profile (JSON next to the
model, read by the controller) with its accuracy-latency curve (JSON + PNG).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
from runtime.generate import join_stream
from runtime.thinking.profile import FEATURES, Speed, ThinkingProfile, probe_signals, profile_path

from .modes import is_correct, load_tasks, run_query, save_figure


@dataclass
class Sample:
    features: dict[str, float]
    off_correct: bool
    on_correct: bool
    probe_ms: float
    on_ms: float
    reasoning_tokens: int


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
        p = 1 / (1 + np.exp(-np.clip(Z @ w, -60, 60)))
        grad = Z.T @ (p - y) / len(y) + l2 * np.r_[0.0, w[1:]] / len(y)
        w -= lr * grad
    raw = np.empty_like(w)
    raw[1:] = w[1:] / sd
    raw[0] = w[0] - float((w[1:] * mu / sd).sum())
    return raw


def sweep(scores: np.ndarray, samples: list[Sample]) -> list[dict]:
    """Accuracy and mean latency of ``auto`` at each threshold (probe always runs)."""
    off = np.array([s.off_correct for s in samples])
    on = np.array([s.on_correct for s in samples])
    probe = np.array([s.probe_ms for s in samples])
    think = np.array([s.on_ms for s in samples])
    curve = []
    for t in np.unique(np.r_[0.0, scores, 1.0 + 1e-9]):
        direct = scores >= t
        curve.append({"threshold": float(t), "accuracy": float(np.where(direct, off, on).mean()),
                      "mean_latency_ms": float((probe + np.where(direct, 0.0, think)).mean()),
                      "think_rate": float((~direct).mean())})
    return curve


def choose_threshold(curve: list[dict], on_accuracy: float, tolerance: float = 0.01) -> dict:
    """The fastest point whose accuracy is within ``tolerance`` of always reasoning."""
    ok = [c for c in curve if c["accuracy"] >= on_accuracy - tolerance]
    if not ok:
        return max(curve, key=lambda c: (c["accuracy"], -c["mean_latency_ms"]))
    return min(ok, key=lambda c: (c["mean_latency_ms"], -c["accuracy"]))


def _probe(engine: Engine, question: str, label, probe_max_tokens: int) -> tuple[dict, bool, float]:
    req = GenerationRequest(messages=[Message("user", question)], max_tokens=probe_max_tokens,
                            sampling=SamplingParams(temperature=0.0), think="off", logprobs=True)
    chunks = list(engine.stream(req))
    res = join_stream(iter(chunks), engine.model_name)
    return probe_signals(question, chunks), is_correct(res.text, label), res.timings.total_ms


def calibrate(model: str, tasks: str, out: str | None = None, plot: str | None = None,
              probe_max_tokens: int = 8, max_tokens: int = 256, threads: int | None = None,
              limit: int | None = None, tolerance: float = 0.01) -> ThinkingProfile:
    """Fit and write the thinking profile of ``model`` on ``tasks``; returns it."""
    rows = load_tasks(tasks)[:limit]
    samples: list[Sample] = []
    with Engine(model, EngineConfig(n_ctx=1024, n_threads=threads, queue_size=1)) as engine:
        engine.controller.profile = None  # calibrate the raw modes, not a previous profile
        for t in rows:
            feats, off_ok, probe_ms = _probe(engine, t["question"], t["answer"], probe_max_tokens)
            on = run_query(engine, t["question"], t["answer"], "on", max_tokens)
            samples.append(Sample(feats, off_ok, on.correct, probe_ms, on.latency_ms, on.tokens))
        speed = Speed(**vars(engine.controller.speed))
        model_path = engine.ref.path
    X = np.array([[1.0] + [s.features.get(f, 0.0) for f in FEATURES[1:]] for s in samples])
    y = np.array([float(s.off_correct) for s in samples])
    w = fit_logistic(X, y)
    scores = 1 / (1 + np.exp(-np.clip(X @ w, -60, 60)))
    on_acc = float(np.mean([s.on_correct for s in samples]))
    curve = sweep(scores, samples)
    best = choose_threshold(curve, on_acc, tolerance)
    profile = ThinkingProfile(
        weights={f: round(float(v), 6) for f, v in zip(FEATURES, w)}, threshold=best["threshold"],
        probe_max_tokens=probe_max_tokens,
        mean_reasoning_tokens=statistics.fmean(s.reasoning_tokens for s in samples),
        mean_answer_tokens=4.0, speed=speed, fitted_on=f"{tasks} (n={len(samples)})", curve=curve)
    target = Path(out) if out else profile_path(model_path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(profile.to_json())
    tmp.replace(target)
    if plot:
        _plot(curve, best, on_acc, float(y.mean()), plot)
    return profile


def _plot(curve: list[dict], best: dict, on_acc: float, off_acc: float, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot([c["mean_latency_ms"] for c in curve], [c["accuracy"] * 100 for c in curve], ".-", label="auto, by threshold")
    ax.scatter([best["mean_latency_ms"]], [best["accuracy"] * 100], s=90, color="red", zorder=3,
               label=f"chosen t={best['threshold']:.2f}")
    ax.axhline(on_acc * 100, ls="--", color="gray", label="always reason")
    ax.axhline(off_acc * 100, ls=":", color="gray", label="always direct")
    ax.set_xlabel("mean latency per query (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out)


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a model's adaptive-thinking profile on a labelled task set")
    p.add_argument("--model", required=True)
    p.add_argument("--tasks", default="arith-calib", help="JSONL {question, answer} or a built-in set name")
    p.add_argument("--out", default=None, help="profile path (default: <model file>.thinking.json)")
    p.add_argument("--plot", default=None, help="PNG of the accuracy-latency curve")
    p.add_argument("--probe-max-tokens", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    prof = calibrate(args.model, args.tasks, args.out, args.plot, args.probe_max_tokens, args.max_tokens,
                     args.threads, args.limit)
    best = next(c for c in prof.curve if c["threshold"] == prof.threshold)
    print(f"threshold {prof.threshold:.3f}: accuracy {best['accuracy'] * 100:.1f}%, "
          f"mean latency {best['mean_latency_ms']:.1f} ms, think rate {best['think_rate'] * 100:.0f}% "
          f"({prof.fitted_on})")
    return 0
