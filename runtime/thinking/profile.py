"""Per-model thinking profile: how ``auto`` turns cheap signals into a decision.

The decision is a two-stage cascade of small logistic models, each estimating
the probability that the direct answer is right:

1. the *gate* scores what is known before the probe decodes anything: the
   question's text, and, where the profile uses it, the model's final hidden
   state at the last prompt token (read in the prefill that produces the first
   logits). Below ``skip_below`` the query plainly needs reasoning, and the
   model reasons at once: a probe there would be paid for and thrown away;
2. otherwise a short direct-answer *probe* runs, and the full model scores the
   gate's features together with the probe's confidence. At or above
   ``threshold`` the probe's answer is returned at once; below it the model
   reasons.

Features come from a registry of named *signals* (``SIGNALS``): ``text`` (the
question's characters, numbers and operators; no model call), ``hidden`` (the
hidden state projected on the principal components the profile stores:
``hidden_pc0``...) and ``probe`` (the probe's token log-probs and entropies).
The profile stores the feature names it was fitted with, the projection, and
weights for the raw feature values (the fit's standardisation is folded into
them). ``thinkling calibrate`` fits the candidates, keeps the combination that
measures best on held-out queries, and writes the profile as JSON next to the
model. A profile written before signals existed loads and decides as before.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TEXT_FEATURES = ("q_chars", "q_numbers", "q_operators")
PROBE_FEATURES = ("probe_mean_logprob", "probe_min_logprob", "probe_first_entropy",
                  "probe_max_entropy", "probe_tokens", "probe_finished")
HIDDEN_PREFIX = "hidden_pc"
# The feature sets of profiles written before the registry (calibrate's defaults then).
GATE_FEATURES = ("bias",) + TEXT_FEATURES
FEATURES = GATE_FEATURES + PROBE_FEATURES

# signal -> (when it is known, what it is); the order is the order of the cascade
SIGNALS = {
    "text": ("question", "the question's text: length, numbers, operators (no model call)"),
    "hidden": ("prefill", "the final hidden state of the last prompt token, projected on stored components"),
    "probe": ("probe", "the direct-answer probe's token log-probs and entropies"),
}


def signal_of(feature: str) -> str:
    """The signal a feature name belongs to (``bias`` belongs to none: '')."""
    if feature in TEXT_FEATURES:
        return "text"
    if feature.startswith(HIDDEN_PREFIX):
        return "hidden"
    if feature in PROBE_FEATURES:
        return "probe"
    return ""


def signals_of(features) -> list[str]:
    """The signals ``features`` draw on, in cascade order."""
    used = {signal_of(f) for f in features}
    return [s for s in SIGNALS if s in used]


@dataclass
class Projection:
    """A linear map of the hidden state to a few features (PCA fitted by calibrate):
    ``hidden_pc{i} = (h - mean) . components[i]``, ``h`` of shape ``[n_embd]``."""

    mean: list[float]
    components: list[list[float]]  # [k, n_embd]

    def __post_init__(self):
        self._mean = np.asarray(self.mean, dtype=np.float32)
        self._comp = np.asarray(self.components, dtype=np.float32)

    def features(self, hidden) -> dict[str, float]:
        if hidden is None or len(hidden) != self._mean.shape[0]:
            return {}  # no state (a model that cannot give it): the features count 0, the mean state
        z = self._comp @ (np.asarray(hidden, dtype=np.float32) - self._mean)
        return {f"{HIDDEN_PREFIX}{i}": float(v) for i, v in enumerate(z)}

    def to_dict(self) -> dict:
        return {"mean": [round(float(x), 6) for x in self._mean],
                "components": [[round(float(x), 6) for x in row] for row in self._comp]}

_NUM = re.compile(r"\d+(?:\.\d+)?")
_OPS = re.compile(r"(?<=[\d\s)])[-+*/×÷^](?=[\s\d(])")


def query_features(question: str) -> dict[str, float]:
    """Cheap features of the question text alone (no model call)."""
    return {
        "q_chars": len(question) / 100.0,
        "q_numbers": float(len(_NUM.findall(question))),
        "q_operators": float(len(_OPS.findall(question))),
    }


def probe_features(logprobs: list[float], entropies: list[float], finished: bool) -> dict[str, float]:
    """Confidence of the direct-answer probe from its token log-probs / entropies."""
    if not logprobs:
        return {"probe_mean_logprob": -10.0, "probe_min_logprob": -10.0, "probe_first_entropy": 10.0,
                "probe_max_entropy": 10.0, "probe_tokens": 0.0, "probe_finished": float(finished)}
    return {
        "probe_mean_logprob": sum(logprobs) / len(logprobs),
        "probe_min_logprob": min(logprobs),
        "probe_first_entropy": entropies[0],
        "probe_max_entropy": max(entropies),
        "probe_tokens": float(len(logprobs)),
        "probe_finished": float(finished),
    }


def probe_signals(question: str, chunks: list) -> dict[str, float]:
    """All features of one probe: the question's and the probe stream's confidence.

    The one place the features are computed, so ``thinkling calibrate`` fits the
    profile on exactly what the controller scores at run time.
    """
    feats = query_features(question)
    feats.update(probe_features([x for c in chunks for x in c.logprobs],
                                [x for c in chunks for x in c.entropies],
                                chunks[-1].finish_reason == "stop"))
    return feats


@dataclass
class Speed:
    """Measured speed of this model on this device (for deadline planning)."""

    prefill_tok_s: float = 0.0
    decode_tok_s: float = 0.0
    samples: int = 0

    def update(self, prompt_tokens: int, prompt_ms: float, decode_tok_s: float, alpha: float = 0.3) -> None:
        if prompt_ms > 0 and prompt_tokens > 0:
            p = prompt_tokens / (prompt_ms / 1000)
            self.prefill_tok_s = p if not self.samples else (1 - alpha) * self.prefill_tok_s + alpha * p
        if decode_tok_s > 0:
            d = decode_tok_s
            self.decode_tok_s = d if not self.decode_tok_s else (1 - alpha) * self.decode_tok_s + alpha * d
        self.samples += 1


def logistic(weights: dict[str, float], features: dict[str, float]) -> float:
    """sigmoid(bias + sum of weight * feature); a feature missing from ``features`` counts 0."""
    z = weights.get("bias", 0.0)
    for name, w in weights.items():
        if name != "bias":
            z += w * features.get(name, 0.0)
    z = max(-60.0, min(60.0, z))
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class ThinkingProfile:
    """The cascade's weights and thresholds, plus usage statistics.

    ``weights``/``threshold``: the probe stage, over ``FEATURES``.
    ``gate_weights``/``skip_below``: the gate, over ``GATE_FEATURES``; an empty
    gate or ``skip_below`` 0 means every ``auto`` query is probed.
    """

    weights: dict[str, float] = field(default_factory=dict)
    threshold: float = 0.5
    gate_weights: dict[str, float] = field(default_factory=dict)
    skip_below: float = 0.0
    probe_max_tokens: int = 8
    mean_reasoning_tokens: float = 64.0
    mean_answer_tokens: float = 4.0
    speed: Speed = field(default_factory=Speed)
    fitted_on: str = ""
    curve: list[dict] = field(default_factory=list)  # threshold sweep at the chosen skip_below
    gate_curve: list[dict] = field(default_factory=list)  # per skip_below, its best threshold
    # the names of every feature the two models use (written for readers; derived from the weights)
    features: list[str] = field(default_factory=list)
    projection: Projection | None = None  # the hidden state's projection (None: no hidden signal)
    signals: dict = field(default_factory=dict)  # calibrate's held-out measurements per candidate

    def __post_init__(self):
        if isinstance(self.projection, dict):
            self.projection = Projection(**self.projection)
        names = [f for f in (*self.gate_weights, *self.weights) if f != "bias"]
        self.features = list(dict.fromkeys(names))

    @property
    def uses_hidden(self) -> bool:
        """Whether either model reads the hidden state (the probe's prefill then reads it)."""
        return self.projection is not None and "hidden" in signals_of(self.features)

    @property
    def gate_uses_hidden(self) -> bool:
        return self.projection is not None and "hidden" in signals_of(self.gate_weights)

    def hidden_features(self, hidden) -> dict[str, float]:
        """The projected hidden-state features (empty without a projection or a state)."""
        return self.projection.features(hidden) if self.projection is not None else {}

    def score(self, features: dict[str, float]) -> float:
        """Estimated probability that the direct answer is correct, after the probe."""
        return logistic(self.weights, features)

    def best_reachable(self, question: dict[str, float], logprobs: list[float], entropies: list[float],
                       max_tokens: int) -> float:
        """The highest score a probe can still reach once its first tokens are in.

        Each probe feature can move only one way as tokens arrive: the minimum
        log-prob only falls, the maximum entropy only rises, the first entropy is
        fixed, the mean log-prob is at most the sum so far over ``max_tokens``
        (log-probs are <= 0), the token count ends in ``[len(logprobs), max_tokens]``.
        Where a weight's sign lets that bound the score, it does; where it does not
        (a feature whose weight rewards an unbounded move, or one unknown here), the
        answer is 1.0, so stopping a probe below ``threshold`` never changes a decision.
        This closed form is hand-written: it is a property of this cascade, not of a library.
        """
        if not logprobs:
            return 1.0
        z = self.weights.get("bias", 0.0)
        k, n_max = len(logprobs), max(max_tokens, len(logprobs))
        for name, w in self.weights.items():
            if name == "bias" or w == 0:
                continue
            if name in question:
                z += w * question[name]
            elif name == "probe_first_entropy":
                z += w * entropies[0]
            elif name == "probe_mean_logprob" and w > 0:
                z += w * sum(logprobs) / n_max
            elif name == "probe_min_logprob" and w > 0:
                z += w * min(logprobs)
            elif name == "probe_max_entropy" and w < 0:
                z += w * max(entropies)
            elif name == "probe_tokens":
                z += w * (n_max if w > 0 else k)
            elif name == "probe_finished":
                z += max(w, 0.0)
            else:
                return 1.0
        return logistic({"bias": z}, {})

    def gate_score(self, features: dict[str, float]) -> float | None:
        """The same estimate from the question alone; None when the profile has no gate."""
        return logistic(self.gate_weights, features) if self.gate_weights else None

    def skips_probe(self, gate: float | None) -> bool:
        """True when the gate alone sends the query to reasoning."""
        return gate is not None and gate < self.skip_below

    def to_json(self) -> str:
        d = asdict(self)
        d["projection"] = self.projection.to_dict() if self.projection is not None else None
        return json.dumps(d, indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "ThinkingProfile":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and k != "features"}
        if isinstance(known.get("speed"), dict):
            known["speed"] = Speed(**{k: v for k, v in known["speed"].items() if k in Speed.__dataclass_fields__})
        return cls(**known)

    @classmethod
    def load(cls, path: str | Path) -> "ThinkingProfile":
        return cls.from_dict(json.loads(Path(path).read_text()))


def profile_path(model_path: str | Path) -> Path:
    """Where a model's profile lives: ``<model file>.thinking.json``."""
    p = Path(model_path)
    return p.with_name(p.name + ".thinking.json")


def find_profile(model_path: str | Path) -> ThinkingProfile | None:
    """The profile next to the model file, or the one for its model directory."""
    p = Path(model_path)
    for candidate in (profile_path(p), p.parent / "thinking_profile.json"):
        if candidate.is_file():
            try:
                return ThinkingProfile.load(candidate)
            except (OSError, ValueError, TypeError):
                return None
    return None
