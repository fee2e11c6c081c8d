"""Parity: do the GGUF files compute the same next-token distribution as the merged source?

A fixed set of prompts is tokenized once by llama.cpp (from the first output),
the same token ids go through every output and through the numpy reference
(``reference.py``), and the last position's logits are compared: max abs
difference, top-1 agreement, KL(reference || file) mean and max. Where the
source has a ``tokenizer.json`` and the ``tokenizers`` package is installed,
llama.cpp's tokenization is also checked against it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

PROMPTS = (
    "Hello",
    "The capital of France is",
    "12 + 7 =",
    "Question: what is 23 times 4? Answer step by step.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Tokyo, Paris, New York — 東京 and café.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "<think>",
)


@dataclass
class Parity:
    prompts: int
    max_abs_diff: float
    top1_agreement: float
    kl_mean: float
    kl_max: float
    near_ties: int = 0  # prompts whose reference top-2 margin is within the file's logit error
    tokenization_matches_hf: bool | None = None
    # the last position's final-norm state against the reference's (files that export it: ONNX)
    hidden_cosine_min: float | None = None
    hidden_max_abs_diff: float | None = None

    def to_dict(self) -> dict:
        d = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        return {k: v for k, v in d.items() if v is not None or not k.startswith("hidden_")}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def compare(test: np.ndarray, ref: np.ndarray, tokenization: bool | None = None) -> Parity:
    """Compare ``[n_prompts, n_vocab]`` logits of a file with the reference."""
    lr, lt = _log_softmax(ref), _log_softmax(test)
    kl = np.maximum((np.exp(lr) * (lr - lt)).sum(-1), 0.0)
    top2 = np.sort(ref, axis=-1)[:, -2:]
    ties = (top2[:, 1] - top2[:, 0]) < 2 * np.abs(test - ref).max(-1)  # top-1 there is a coin flip
    return Parity(prompts=int(ref.shape[0]), max_abs_diff=float(np.abs(test - ref).max()),
                  top1_agreement=float((test.argmax(-1) == ref.argmax(-1)).mean()),
                  kl_mean=float(kl.mean()), kl_max=float(kl.max()), near_ties=int(ties.sum()),
                  tokenization_matches_hf=tokenization)


def _open(path: Path, n_ctx: int, threads: int):
    from thinkling.runtime.backends import BackendOptions, open_backend

    return open_backend("llama_cpp", str(path), BackendOptions(n_ctx=n_ctx, n_threads=threads))


def tokenize(path: Path, prompts: tuple[str, ...] | list[str], threads: int = 2) -> list[list[int]]:
    """llama.cpp's tokenization (with BOS etc. as the file says) of each prompt."""
    b = _open(path, 512, threads)
    try:
        return [b.tokenize(p, add_special=True) for p in prompts]
    finally:
        b.close()


def hf_tokenization(tokenizer_json: Path, prompts) -> list[list[int]] | None:
    """The HF tokenizer's ids, or None when tokenizer.json or the tokenizers package is missing."""
    if not tokenizer_json.is_file():
        return None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tok = Tokenizer.from_file(str(tokenizer_json))
    return [tok.encode(p, add_special_tokens=True).ids for p in prompts]


def _logit_rows(path: Path, token_lists: list[list[int]], threads: int, every_position: bool) -> np.ndarray:
    """Evaluate each prompt on a fresh cache: its last position's logits, or every position's."""
    n_ctx = max(len(t) for t in token_lists) + 8
    b = _open(path, max(n_ctx, 64), threads)
    try:
        rows = []
        for tokens in token_lists:
            b.truncate(0)
            steps = [[t] for t in tokens] if every_position else [list(tokens)]
            for step in steps:
                rows.append(np.array(b.eval(step), dtype=np.float32))  # copy: eval returns a view
        return np.stack(rows)
    finally:
        b.close()


def gguf_logits(path: Path, token_lists: list[list[int]], threads: int = 2) -> np.ndarray:
    """Last-position logits ``[n_prompts, n_vocab]``, a fresh cache per prompt."""
    return _logit_rows(path, token_lists, threads, every_position=False)


def teacher_forced_logits(path: Path, token_lists: list[list[int]], threads: int) -> np.ndarray:
    """Next-token logits at every position of every prompt, ``[positions, n_vocab]``.

    One token per evaluation (the backend returns the last position's logits),
    so it is slow on big models; the parity prompts are short.
    """
    return _logit_rows(path, token_lists, threads, every_position=True)


def format_table(rows: list[tuple[str, Parity]]) -> str:
    """A plain-text table, one row per file."""
    head = (f"{'file':<32} {'prompts':>7} {'max|dlogit|':>11} {'top-1':>7} {'near ties':>9} "
            f"{'KL mean':>10} {'KL max':>10}")
    lines = [head, "-" * len(head)]
    for name, p in rows:
        lines.append(f"{name:<32} {p.prompts:>7} {p.max_abs_diff:>11.4g} {p.top1_agreement:>7.1%} "
                     f"{p.near_ties:>9} {p.kl_mean:>10.3g} {p.kl_max:>10.3g}")
    return "\n".join(lines)
