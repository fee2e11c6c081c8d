"""Which signals should ``auto`` decide on: fit the candidates, measure them on held-out queries.

``thinkling calibrate`` hands this module one ``Sample`` per task (the probe's
features, the last prompt token's hidden state, whether the direct answer and
the reasoning were right, what each cost). Every candidate cascade (a gate over
some signals, then the probe stage over the gate's signals plus the probe's) is
fitted and scored with k-fold cross-validation, so each query's score comes
from a model that never saw it: the hidden state's projection (PCA) is fitted
inside each fold too. The candidate whose held-out cascade is fastest at
``on``'s accuracy (within the tolerance) wins; it is refitted on every query,
and its thresholds are the ones chosen on the held-out scores, since in-sample
scores of a 16-component state flatter the thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from thinkling.runtime.thinking.profile import HIDDEN_PREFIX, PROBE_FEATURES, TEXT_FEATURES, Projection

# gate signals -> probe-stage signals; "none": no gate, every query is probed
CANDIDATES = {
    "text": (("text",), ("text", "probe")),
    "hidden": (("hidden",), ("hidden", "probe")),
    "text+hidden": (("text", "hidden"), ("text", "hidden", "probe")),
    "none": ((), ("probe",)),
}


@dataclass
class Fitted:
    """One candidate refitted on every query."""

    name: str
    gate_weights: dict[str, float]
    weights: dict[str, float]
    projection: Projection | None


def auroc(scores: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance a random right query outscores a random
    wrong one (ties count half). None when one class is missing. Rank form, by hand:
    four lines do not warrant scikit-learn."""
    pos, neg = scores[y == 1], scores[y == 0]
    if not len(pos) or not len(neg):
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def pca(H: np.ndarray, k: int) -> Projection:
    """The first ``k`` principal components of the rows of ``H`` ``[n, n_embd]``,
    scaled so each projected feature has unit variance on the fitting rows."""
    mean = H.mean(0)
    _, s, vt = np.linalg.svd(H - mean, full_matrices=False)
    k = min(k, len(s))
    sd = s[:k] / max(np.sqrt(len(H) - 1), 1.0)
    sd[sd == 0] = 1.0
    return Projection(mean=mean.tolist(), components=(vt[:k] / sd[:, None]).tolist())


def design(feats: list[dict], hidden: np.ndarray | None, signals: tuple[str, ...],
           proj: Projection | None) -> tuple[np.ndarray, list[str]]:
    """The design matrix (column 0 the bias) and its feature names for ``signals``."""
    names: list[str] = []
    cols: list[np.ndarray] = []
    if "text" in signals:
        names += TEXT_FEATURES
        cols.append(np.array([[f.get(n, 0.0) for n in TEXT_FEATURES] for f in feats]))
    if "hidden" in signals and proj is not None and hidden is not None:
        Z = (hidden - np.asarray(proj.mean)) @ np.asarray(proj.components).T
        names += [f"{HIDDEN_PREFIX}{i}" for i in range(Z.shape[1])]
        cols.append(Z)
    if "probe" in signals:
        names += PROBE_FEATURES
        cols.append(np.array([[f.get(n, 0.0) for n in PROBE_FEATURES] for f in feats]))
    X = np.hstack([np.ones((len(feats), 1))] + cols) if cols else np.ones((len(feats), 1))
    return X, ["bias"] + names


def _fit_candidate(fit, feats, hidden, y, name, k, l2):
    """(gate weights vector fn, probe weights fn, projection) fitted on the given rows."""
    gate_sig, probe_sig = CANDIDATES[name]
    proj = pca(hidden, k) if hidden is not None and ("hidden" in probe_sig) else None
    Xg, gnames = design(feats, hidden, gate_sig, proj)
    Xp, pnames = design(feats, hidden, probe_sig, proj)
    wg = fit(Xg, y, l2=l2) if gate_sig else None
    wp = fit(Xp, y, l2=l2)
    return proj, (gnames, wg), (pnames, wp)


def held_out_scores(fit, predict, feats: list[dict], hidden: np.ndarray | None, y: np.ndarray, name: str,
                    folds: int = 5, k: int = 16, l2: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gate scores, probe-stage scores) of every query from models fitted without it.
    A candidate without a gate gets gate scores of 1 (never skips)."""
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    gate, probe = np.ones(n), np.zeros(n)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        sub = [feats[i] for i in train]
        if len(set(y[train])) < 2:  # one class only: no model to fit, predict its rate
            gate[test] = probe[test] = float(y[train].mean())
            continue
        proj, (_, wg), (_, wp) = _fit_candidate(fit, sub, None if hidden is None else hidden[train], y[train],
                                                name, k, l2)
        tf = [feats[i] for i in test]
        th = None if hidden is None else hidden[test]
        gate_sig, probe_sig = CANDIDATES[name]
        if wg is not None:
            gate[test] = predict(design(tf, th, gate_sig, proj)[0], wg)
        probe[test] = predict(design(tf, th, probe_sig, proj)[0], wp)
    return gate, probe


def refit(fit, feats: list[dict], hidden: np.ndarray | None, y: np.ndarray, name: str, k: int = 16,
          l2: float = 1.0) -> Fitted:
    """The candidate ``name`` fitted on every query: named weights and its projection."""
    proj, (gnames, wg), (pnames, wp) = _fit_candidate(fit, feats, hidden, y, name, k, l2)
    named = lambda names, w: {n: round(float(v), 6) for n, v in zip(names, w)}  # noqa: E731
    return Fitted(name, {} if wg is None else named(gnames, wg), named(pnames, wp), proj)


def available(hidden: np.ndarray | None, wanted: list[str] | None = None) -> list[str]:
    """The candidates this calibration can fit (no state read: no hidden candidates)."""
    names = [c for c in CANDIDATES if hidden is not None or "hidden" not in CANDIDATES[c][1]]
    return [c for c in names if wanted is None or c in wanted]
