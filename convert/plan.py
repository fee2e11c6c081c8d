"""Which GGUF tensors to write, from which HF tensors, with which layout change.

``plan_tensors`` walks the merged weights' names through the architecture's
table (``archs.py``); anything the table does not know is an error, so a
checkpoint with extra modules is refused instead of silently dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .archs import EMBED, GLOBAL_TENSORS, HEAD, IGNORED, ArchSpec, Dims
from .errors import ConversionError
from .weights import MergedWeights

_LAYER = re.compile(r"model\.layers\.(\d+)\.(.+)")


@dataclass(frozen=True)
class TensorPlan:
    gguf: str  # e.g. blk.0.attn_q.weight
    hf: str  # e.g. model.layers.0.self_attn.q_proj.weight
    shape: tuple[int, ...]  # numpy (row-major) shape, the same on both sides
    transform: str = ""  # "", "permute_q", "permute_k" or "plus_one"

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) == 2


def plan_tensors(spec: ArchSpec, dims: Dims, weights: MergedWeights) -> list[TensorPlan]:
    """Token embedding, then blocks in order, then the final norm and (untied) output head."""
    blocks: dict[int, list[TensorPlan]] = {}
    head: list[TensorPlan] = []
    seen_layer: dict[int, set[str]] = {}
    for name in weights:
        if any(p.match(name) for p in IGNORED):
            continue
        if name in GLOBAL_TENSORS:
            plan = TensorPlan(GLOBAL_TENSORS[name], name, weights.shape(name),
                              "plus_one" if spec.norm_plus_one and name == "model.norm.weight" else "")
            (blocks.setdefault(-1, []) if name == EMBED else head).append(plan)
            continue
        m = _LAYER.fullmatch(name)
        if not m or m.group(2) not in spec.layer_tensors:
            raise ConversionError(f"tensor {name} is not part of the {spec.gguf_arch} architecture")
        i, local = int(m.group(1)), m.group(2)
        if i >= dims.n_layers:
            raise ConversionError(f"tensor {name} belongs to layer {i}, but the config has {dims.n_layers}")
        seen_layer.setdefault(i, set()).add(local)
        blocks.setdefault(i, []).append(
            TensorPlan(f"blk.{i}.{spec.layer_tensors[local]}", name, weights.shape(name), layout_transform(spec, local)))
    required = set(spec.layer_tensors) - spec.optional
    for i in range(dims.n_layers):
        missing = required - seen_layer.get(i, set())
        if missing:
            raise ConversionError(f"layer {i} lacks {', '.join(sorted(missing))}")
    if EMBED not in weights:
        raise ConversionError(f"the model has no {EMBED}")
    head.sort(key=lambda p: p.hf != "model.norm.weight")
    plans = [p for i in sorted(blocks) for p in sorted(blocks[i], key=lambda p: p.gguf)]
    return plans + head


def layout_transform(spec: ArchSpec, local: str) -> str:
    """The layout change a layer tensor (name under ``model.layers.{i}.``) gets in GGUF."""
    if spec.permute_qk and local.startswith("self_attn.q_proj."):
        return "permute_q"
    if spec.permute_qk and local.startswith("self_attn.k_proj."):
        return "permute_k"
    if spec.norm_plus_one and local.endswith("norm.weight"):
        return "plus_one"
    return ""


def to_gguf_layout(plan: TensorPlan, w: np.ndarray, dims: Dims) -> np.ndarray:
    """Apply the plan's layout change to a merged HF tensor."""
    if plan.transform == "plus_one":
        return w + np.float32(1.0)
    if plan.transform in ("permute_q", "permute_k"):
        heads = dims.n_heads if plan.transform == "permute_q" else dims.n_kv_heads
        return permute_rope(w, heads)
    return w


def permute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF's half-split RoPE rows -> llama.cpp's interleaved pairs, per head.

    Rows of one head [x0..x(d/2-1), y0..y(d/2-1)] become [x0, y0, x1, y1, ...].
    ``w`` is [n_heads * head_dim, in] (or a bias [n_heads * head_dim])."""
    head_dim = w.shape[0] // n_heads
    return (w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:])
             .swapaxes(1, 2)
             .reshape(w.shape))


def unpermute_rope(w: np.ndarray, n_heads: int) -> np.ndarray:
    """The inverse of ``permute_rope``: llama.cpp's interleaved pairs -> HF's halves."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def output_is_written(weights: MergedWeights) -> bool:
    return HEAD in weights
