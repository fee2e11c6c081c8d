"""Token sampling on next-token logits, shared by every backend.

Order follows llama.cpp's default chain: penalties (repetition, then
OpenAI's frequency and presence), top-k, top-p and min-p (on the untempered
distribution), then temperature, then a seeded draw. Temperature 0 is a plain
argmax over the penalized logits: deterministic, no filters, no penalty unless
the request sets one.
"""

from __future__ import annotations

import numpy as np

from .types import SamplingParams


def log_softmax_at(logits: np.ndarray, token_id: int) -> float:
    """Log-probability of ``token_id`` under ``softmax(logits)``."""
    m = float(np.max(logits))
    lse = m + float(np.log(np.sum(np.exp(logits - m, dtype=np.float64))))
    return float(logits[token_id]) - lse


def entropy(logits: np.ndarray) -> float:
    """Shannon entropy (nats) of ``softmax(logits)``."""
    z = logits.astype(np.float64) - float(np.max(logits))
    p = np.exp(z)
    p /= p.sum()
    nz = p > 0
    return float(-(p[nz] * np.log(p[nz])).sum())


def apply_penalties(logits: np.ndarray, history: list[int], params: SamplingParams,
                    n_prompt: int = 0) -> np.ndarray:
    """``logits`` (shape ``[n_vocab]``) with the request's penalties applied;
    the input is never modified (a copy is returned when anything changes).

    ``history`` is the prompt followed by the tokens generated so far; its first
    ``n_prompt`` tokens are the prompt. The repetition penalty looks at the last
    ``repeat_last_n`` tokens of it, prompt included (llama.cpp's rule); the
    frequency and presence penalties count only the generated part (OpenAI's):
    ``logit[t] -= frequency_penalty * count[t] + presence_penalty * (count[t] > 0)``.
    """
    p = params
    out = logits
    if p.repeat_penalty != 1.0 and history:
        recent = np.unique(np.asarray(history[-p.repeat_last_n:], dtype=np.int64))
        out = logits.copy()
        vals = out[recent]
        # llama.cpp convention: divide positive logits, multiply negative ones.
        out[recent] = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
    if (p.frequency_penalty or p.presence_penalty) and len(history) > n_prompt:
        ids, counts = np.unique(np.asarray(history[n_prompt:], dtype=np.int64), return_counts=True)
        if out is logits:
            out = logits.copy()
        out[ids] -= p.frequency_penalty * counts + p.presence_penalty
    return out


class Sampler:
    """Stateful sampler for one generation (owns the RNG). ``n_prompt``: how
    many leading tokens of the ``history`` given to ``sample`` are the prompt
    (see ``apply_penalties``)."""

    def __init__(self, params: SamplingParams, n_prompt: int = 0):
        self.params = params
        self.n_prompt = n_prompt
        self.rng = np.random.default_rng(params.seed)

    def sample(self, logits: np.ndarray, history: list[int]) -> int:
        p = self.params
        logits = apply_penalties(logits, history, p, self.n_prompt)
        if p.greedy:
            return int(np.argmax(logits))
        n = logits.shape[0]
        if 0 < p.top_k < n:
            cand = np.argpartition(logits, n - p.top_k)[n - p.top_k:]
        else:
            cand = np.arange(n)
        vals = logits[cand].astype(np.float64)
        order = np.argsort(-vals, kind="stable")
        cand, vals = cand[order], vals[order]
        probs = np.exp(vals - vals[0])
        probs /= probs.sum()
        keep = len(cand)
        if p.top_p < 1.0:
            # smallest prefix whose mass reaches top_p (at least one token)
            keep = min(keep, int(np.searchsorted(np.cumsum(probs), p.top_p) + 1))
        if p.min_p > 0.0:
            keep = min(keep, max(1, int(np.sum(probs >= p.min_p * probs[0]))))
        cand, vals = cand[:keep], vals[:keep]
        scaled = (vals - vals[0]) / p.temperature
        w = np.exp(scaled)
        total = w.sum()
        if not np.isfinite(total) or total <= 0:  # degenerate logits: fall back to the best candidate
            return int(cand[0])
        return int(cand[self.rng.choice(len(cand), p=w / total)])
