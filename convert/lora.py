"""PEFT LoRA adapters: reading, validating against the base, and merging in fp32.

An adapter directory holds ``adapter_config.json`` and ``adapter_model.safetensors``
whose keys are the base model's module paths under ``base_model.model.``:

    <module>.lora_A.weight           [r, in]       linear layers
    <module>.lora_B.weight           [out, r]
    <module>.lora_embedding_A        [r, n_vocab]  embeddings
    <module>.lora_embedding_B        [dim, r]
    <module>.weight / .bias          full replacement (modules_to_save, bias="all")
    <module>.base_layer.weight       a copy of the base (saved when embeddings are targeted)

The merged weight is ``W + scale * B @ A`` with ``scale = alpha / r`` (``alpha /
sqrt(r)`` with rsLoRA); r and alpha may be overridden per module by
``rank_pattern`` / ``alpha_pattern``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import AdapterMismatch, MissingFile, UnsupportedAdapter
from .source import TensorRef, load_tensor, read_header, read_json, safetensors_files

PREFIX = "base_model.model."


def merge_lora(W: np.ndarray, A: np.ndarray, B: np.ndarray, scale: float, fan_in_fan_out: bool = False) -> np.ndarray:
    """Return ``W + scale * B @ A`` computed in float32 (a new array; W is not modified).

    W: [out, in] (or [in, out] when ``fan_in_fan_out``, the GPT-2 Conv1D layout,
    in which case the delta is transposed); A: [r, in]; B: [out, r].
    An embedding is the ``fan_in_fan_out`` case: W [n_vocab, dim], A [r, n_vocab], B [dim, r].
    """
    delta = B.astype(np.float32) @ A.astype(np.float32)
    if fan_in_fan_out:
        delta = delta.T
    if delta.shape != W.shape:
        raise ValueError(f"LoRA delta has shape {delta.shape}, weight has {W.shape}")
    return W.astype(np.float32) + np.float32(scale) * delta


@dataclass(frozen=True)
class LoraPair:
    """One adapted module: where A and B are and how to scale them."""

    module: str  # base module path, e.g. model.layers.0.self_attn.q_proj
    a: TensorRef
    b: TensorRef
    r: int
    alpha: float
    scale: float
    embedding: bool


@dataclass
class Adapter:
    """A validated PEFT LoRA adapter, ready to merge into base tensors one by one."""

    path: Path
    config: dict
    pairs: dict[str, LoraPair] = field(default_factory=dict)  # base weight name -> pair
    replacements: dict[str, TensorRef] = field(default_factory=dict)  # base tensor name -> full tensor
    weight_files: list[Path] = field(default_factory=list)

    def merged(self, name: str, W: np.ndarray | None) -> np.ndarray:
        """The base tensor ``name`` with this adapter applied (replacement or LoRA delta)."""
        if name in self.replacements:
            return load_tensor(self.replacements[name])
        return self.apply_lora(name, W)

    def apply_lora(self, name: str, W: np.ndarray) -> np.ndarray:
        """``W`` plus this adapter's LoRA delta for ``name`` (``W`` itself if none)."""
        pair = self.pairs.get(name)
        if pair is None:
            return W
        return merge_lora(W, load_tensor(pair.a), load_tensor(pair.b), pair.scale,
                          fan_in_fan_out=pair.embedding)

    def touches(self, name: str) -> bool:
        return name in self.replacements or name in self.pairs

    def summary(self) -> dict:
        """What the manifest records about the adapter."""
        c = self.config
        return {
            "r": c.get("r"), "alpha": c.get("lora_alpha"), "use_rslora": bool(c.get("use_rslora")),
            "rank_pattern": c.get("rank_pattern") or {}, "alpha_pattern": c.get("alpha_pattern") or {},
            "target_modules": c.get("target_modules"), "modules_to_save": c.get("modules_to_save"),
            "merged_modules": len(self.pairs), "replaced_tensors": sorted(self.replacements),
            "peft_version": c.get("peft_version"),
        }


# Features whose merge is not W + s*B@A; each is rejected with a clear error.
_UNSUPPORTED_FLAGS = {
    "use_dora": "DoRA (use_dora=true) changes the merge to a magnitude-normalised update",
    "lora_bias": "lora_bias=true (a bias on lora_B)",
    "use_qalora": "QA-LoRA",
    "layer_replication": "layer_replication",
    "target_parameters": "LoRA on nn.Parameter (target_parameters)",
    "trainable_token_indices": "trainable_token_indices",
    "use_bdlora": "block-diagonal LoRA",
    "alora_invocation_tokens": "activated LoRA (aLoRA), which only applies after its invocation tokens",
}


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rule: a pattern key applies when the module path ends with it at a dot boundary."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _check_config(path: Path, cfg: dict, base_arch: str | None) -> None:
    peft_type = str(cfg.get("peft_type", "")).upper()
    if peft_type != "LORA":
        raise UnsupportedAdapter(f"PEFT type {cfg.get('peft_type')!r}", "only LORA adapters can be merged")
    for key, what in _UNSUPPORTED_FLAGS.items():
        if cfg.get(key):
            raise UnsupportedAdapter(what)
    auto = cfg.get("auto_mapping") or {}
    adapter_arch = auto.get("base_model_class")
    if base_arch and adapter_arch and adapter_arch != base_arch:
        raise AdapterMismatch("adapter_config.json", "trained for another architecture",
                              expected=base_arch, got=adapter_arch)


def load_adapter(path: str | Path, base_shapes: dict[str, tuple[int, ...]], base_arch: str | None) -> Adapter:
    """Read and validate an adapter against the base model's tensor shapes."""
    path = Path(path)
    if not path.is_dir():
        raise MissingFile(str(path), "adapter directory")
    cfg = read_json(path / "adapter_config.json", "PEFT adapter config")
    _check_config(path, cfg, base_arch)
    files = safetensors_files(path, "adapter_model.safetensors.index.json", "adapter_model.safetensors")
    refs: dict[str, TensorRef] = {}
    for f in files:
        refs.update(read_header(f))
    adapter = Adapter(path=path, config=cfg, weight_files=files)
    lora_a: dict[str, tuple[TensorRef, bool]] = {}
    lora_b: dict[str, TensorRef] = {}
    for key, ref in refs.items():
        if not key.startswith(PREFIX):
            raise AdapterMismatch(key, f"adapter key does not start with {PREFIX!r}")
        name = key[len(PREFIX):]
        if "lora_magnitude_vector" in name:
            raise UnsupportedAdapter("DoRA", f"found {key}")
        m = re.fullmatch(r"(.+)\.(lora_A\.weight|lora_B\.weight|lora_embedding_A|lora_embedding_B)", name)
        if m:
            module, kind = m.groups()
            if kind.endswith("A.weight") or kind == "lora_embedding_A":
                lora_a[module] = (ref, kind == "lora_embedding_A")
            else:
                lora_b[module] = ref
            continue
        if ".lora_" in name:
            raise UnsupportedAdapter(f"adapter tensor {key}")
        # a full tensor: modules_to_save copy, trained bias, or a base_layer copy
        target = name.replace(".base_layer.", ".")
        if target not in base_shapes:
            raise AdapterMismatch(target, "the base model has no such tensor")
        if ref.shape != base_shapes[target]:
            raise AdapterMismatch(target, "shape differs from the base", expected=base_shapes[target], got=ref.shape)
        if ".base_layer." not in name:
            adapter.replacements[target] = ref
    for module in sorted(set(lora_a) | set(lora_b)):
        adapter_pair = _make_pair(cfg, module, lora_a.get(module), lora_b.get(module), base_shapes)
        weight = f"{module}.weight"
        if weight in adapter.replacements:
            raise UnsupportedAdapter(f"{module} is both LoRA-adapted and fully saved")
        adapter.pairs[weight] = adapter_pair
    if not adapter.pairs and not adapter.replacements:
        raise AdapterMismatch(str(path), "the adapter holds no LoRA or saved-module tensors")
    return adapter


def _make_pair(cfg: dict, module: str, a_entry, b: TensorRef | None, base_shapes: dict) -> LoraPair:
    if a_entry is None or b is None:
        raise AdapterMismatch(module, "has lora_A without lora_B or the other way round")
    a, embedding = a_entry
    weight = f"{module}.weight"
    if weight not in base_shapes:
        raise AdapterMismatch(module, "the base model has no such module")
    w_shape = base_shapes[weight]
    r = int(_pattern_value(cfg.get("rank_pattern"), module, cfg.get("r", 8)))
    alpha = float(_pattern_value(cfg.get("alpha_pattern"), module, cfg.get("lora_alpha", 8)))
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise AdapterMismatch(module, "lora_A/lora_B must be matrices", got=(a.shape, b.shape))
    if a.shape[0] != r or b.shape[1] != r:
        raise AdapterMismatch(module, "rank differs from adapter_config.json (r / rank_pattern)",
                              expected=r, got=(a.shape[0], b.shape[1]))
    # delta = B @ A is [out, in] for linear layers and [dim, n_vocab] (transposed) for embeddings
    delta_shape = (b.shape[0], a.shape[1])
    want = (w_shape[1], w_shape[0]) if embedding else tuple(w_shape)
    if delta_shape != want:
        raise AdapterMismatch(weight, "LoRA shapes do not fit the base weight", expected=want, got=delta_shape)
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    return LoraPair(module=module, a=a, b=b, r=r, alpha=alpha, scale=scale, embedding=embedding)
