"""Feeding the ONNX exporter and checking what it wrote.

Weights come from the converter's ``convert.weights.open_weights`` (so ONNX and
GGUF see the same LoRA merge, tied embeddings included). The parity helpers run
an exported ``.onnx`` through the runtime's onnx backend on given token ids;
the comparison is the converter's ``convert.parity.compare``, against the one
numpy reference forward ``convert()`` computes for all its outputs; the
``hidden_last`` output is compared with that forward's final-norm states.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from thinkling.runtime.files import write_text_atomic


def load_merged(src: str | Path, lora: str | Path | None = None):
    """``(weights, config)``: the converter's merged-weights mapping and the HF config."""
    from ..weights import open_weights

    weights = open_weights(src, lora)
    return weights, weights.model.config


def onnx_logits(path: str | Path, prompts: Sequence[Sequence[int]], n_threads: int = 2) -> np.ndarray:
    """Next-token logits ``[len(prompts), n_vocab]`` from the onnx backend, cold cache per prompt."""
    return onnx_outputs(path, prompts, n_threads)[0]


def onnx_outputs(path: str | Path, prompts: Sequence[Sequence[int]],
                 n_threads: int = 2) -> tuple[np.ndarray, np.ndarray | None]:
    """``(logits [len(prompts), n_vocab], hidden [len(prompts), hidden] or None)``: the onnx
    backend's ``eval_hidden`` on each prompt, cold cache; ``hidden`` is the graph's
    ``hidden_last`` output, ``None`` for a decoder without it."""
    from thinkling.runtime.backends import BackendOptions, open_backend

    b = open_backend("onnx", str(path), BackendOptions(n_ctx=4096, n_threads=n_threads))
    try:
        logits, hidden = [], []
        for ids in prompts:
            b.truncate(0)
            row, state = b.eval_hidden(list(ids))
            logits.append(np.array(row, dtype=np.float32))
            hidden.append(state)
        states = None if any(h is None for h in hidden) else np.stack(hidden).astype(np.float32)
        return np.stack(logits), states
    finally:
        b.close()


def compare_hidden(test: np.ndarray, ref: np.ndarray) -> dict:
    """``hidden_cosine_min`` (the least cosine similarity over prompts) and
    ``hidden_max_abs_diff`` of ``[n_prompts, hidden]`` states against the reference."""
    t, r = test.astype(np.float64), ref.astype(np.float64)
    cos = (t * r).sum(-1) / np.maximum(np.linalg.norm(t, axis=-1) * np.linalg.norm(r, axis=-1), 1e-30)
    return {"hidden_cosine_min": float(cos.min()), "hidden_max_abs_diff": float(np.abs(t - r).max())}


def onnx_tokenize(path: str | Path, prompts: Sequence[str], n_threads: int = 2) -> list[list[int]]:
    """The parity prompts as the onnx backend tokenizes them (when there is no GGUF output)."""
    from thinkling.runtime.backends import BackendOptions, open_backend

    b = open_backend("onnx", str(path), BackendOptions(n_ctx=512, n_threads=n_threads))
    try:
        return [b.tokenize(p, add_special=True) for p in prompts]
    finally:
        b.close()


def compare_logits(test: np.ndarray, ref: np.ndarray) -> dict:
    """Max abs diff, top-1 agreement, KL(ref || test) mean/max: the GGUF table's columns."""
    from ..parity import compare

    return compare(test, ref).to_dict()


def check_staged(files: dict[str, Path], entries: Sequence[dict], tokens: Sequence[Sequence[int]],
                 ref: np.ndarray, hf_matches: bool | None, threads: int,
                 ref_hidden: np.ndarray | None = None) -> None:
    """Parity of each staged ONNX decoder against ``ref``: into its entry and its folder's manifest.

    ``files`` maps each entry's folder (``export.folder_of``) to its staged temporary path.
    With ``ref_hidden`` (the reference's final-norm states, ``[n_prompts, hidden]``) the
    decoder's ``hidden_last`` output is compared too (``hidden_cosine_min``, ``hidden_max_abs_diff``).
    """
    from ..parity import compare
    from .export import folder_of

    for e in entries:
        folder = files[folder_of(e)]
        logits, hidden = onnx_outputs(folder / Path(e["path"]).name, tokens, threads)
        parity = compare(logits, ref, hf_matches)
        if ref_hidden is not None and hidden is not None:
            parity = replace(parity, **compare_hidden(hidden, ref_hidden))
        e["parity"] = parity.to_dict()
        mpath = folder / "manifest.json"  # the copy the runtime reads
        local = json.loads(mpath.read_text())
        local["files"][0]["parity"] = e["parity"]
        write_text_atomic(mpath, json.dumps(local, indent=2) + "\n")
