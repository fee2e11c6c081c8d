"""Feeding the ONNX exporter and checking what it wrote.

``MergedWeights`` exposes a base model (+ optional LoRA adapter) as a mapping
of HF-named float32 tensors, merged on access through the converter's
``convert.lora`` (so ONNX and GGUF see the same merged weights). The parity
helpers run an exported ``.onnx`` through the runtime's onnx backend on given
token ids and compare next-token logits with a reference.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np


class MergedWeights(Mapping):
    """Base tensors with the adapter applied, loaded one at a time on access."""

    def __init__(self, model, adapter=None):
        self.model, self.adapter = model, adapter  # convert.source.HFModel, convert.lora.Adapter

    def __getitem__(self, name: str) -> np.ndarray:
        if not self.model.has(name):
            if self.adapter is not None and name in self.adapter.replacements:
                return self.adapter.merged(name, None)
            raise KeyError(name)
        w = self.model.load(name)
        return self.adapter.merged(name, w) if self.adapter is not None else w

    def __iter__(self) -> Iterator[str]:
        return iter(self.model.tensors)

    def __len__(self) -> int:
        return len(self.model.tensors)


def load_merged(src: str | Path, lora: str | Path | None = None) -> tuple[MergedWeights, dict]:
    """``(weights, config)`` of an HF folder, with ``lora`` merged if given."""
    from .source import HFModel

    model = HFModel(src)
    adapter = None
    if lora is not None:
        from .lora import load_adapter

        shapes = {n: r.shape for n, r in model.tensors.items()}
        arch = (model.config.get("architectures") or [None])[0]
        adapter = load_adapter(lora, shapes, arch)
    return MergedWeights(model, adapter), model.config


def onnx_logits(path: str | Path, prompts: Sequence[Sequence[int]], n_threads: int = 2) -> np.ndarray:
    """Next-token logits ``[len(prompts), n_vocab]`` from the onnx backend, cold cache per prompt."""
    from runtime.backends import BackendOptions, open_backend

    b = open_backend("onnx", str(path), BackendOptions(n_ctx=4096, n_threads=n_threads))
    try:
        rows = []
        for ids in prompts:
            b.truncate(0)
            rows.append(np.array(b.eval(list(ids)), dtype=np.float32))
        return np.stack(rows)
    finally:
        b.close()


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def compare_logits(test: np.ndarray, ref: np.ndarray) -> dict:
    """Max abs diff, top-1 agreement and mean KL(ref || test) over rows."""
    n = min(test.shape[-1], ref.shape[-1])  # a padded vocabulary has extra columns
    test, ref = test[:, :n], ref[:, :n]
    lr, lt = _log_softmax(ref), _log_softmax(test)
    kl = (np.exp(lr) * (lr - lt)).sum(-1)
    return {"max_abs_diff": float(np.abs(test - ref).max()),
            "top1_agreement": float((test.argmax(-1) == ref.argmax(-1)).mean()),
            "kl_divergence": float(max(kl.mean(), 0.0)),
            "prompts": int(test.shape[0])}
