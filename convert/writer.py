"""Writing GGUF files directly with gguf-py (F32, F16, BF16, Q8_0).

All direct outputs are written in one pass: each tensor is loaded and merged
once, then encoded for every requested type. The steps, in order:

1. open one ``GGUFWriter`` per output and add the header metadata;
2. declare every tensor (name, shape, GGML type, byte size) so the header can
   be written before any data;
3. write header, metadata and tensor infos;
4. stream the tensors: merge -> GGUF layout -> encode -> append to each file.

1-D tensors (norms, biases) stay F32 in every file, as llama.cpp expects.
A matrix whose rows do not divide into the type's blocks is written as F16
instead and reported as a fallback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, LlamaFileType
from gguf.quants import quantize

from .archs import Dims
from .errors import ConversionError
from .plan import TensorPlan, to_gguf_layout
from .weights import MergedWeights

log = logging.getLogger(__name__)
Q = GGMLQuantizationType
GGML_QUANT_VERSION = 2


@dataclass(frozen=True)
class QuantSpec:
    """One output type. ``direct`` types are written here; the others by llama.cpp from F16."""

    name: str  # as in the file name: f16, q8_0, q4_k_m
    file_type: int  # llama_ftype / general.file_type
    tensor_type: GGMLQuantizationType  # the type most matrices get
    direct: bool


QUANTS = {
    "f32": QuantSpec("f32", LlamaFileType.ALL_F32, Q.F32, True),
    "f16": QuantSpec("f16", LlamaFileType.MOSTLY_F16, Q.F16, True),
    "bf16": QuantSpec("bf16", LlamaFileType.MOSTLY_BF16, Q.BF16, True),
    "q8_0": QuantSpec("q8_0", LlamaFileType.MOSTLY_Q8_0, Q.Q8_0, True),
    "q4_k_m": QuantSpec("q4_k_m", LlamaFileType.MOSTLY_Q4_K_M, Q.Q4_K, False),
    "q5_k_m": QuantSpec("q5_k_m", LlamaFileType.MOSTLY_Q5_K_M, Q.Q5_K, False),
    "q6_k": QuantSpec("q6_k", LlamaFileType.MOSTLY_Q6_K, Q.Q6_K, False),
}


@dataclass(frozen=True)
class Fallback:
    tensor: str
    wanted: str
    got: str

    def to_dict(self) -> dict:
        return {"tensor": self.tensor, "wanted": self.wanted, "got": self.got}


def tensor_type(plan: TensorPlan, quant: QuantSpec) -> GGMLQuantizationType:
    """The GGML type ``plan`` gets in a ``quant`` file."""
    if not plan.is_matrix:
        return Q.F32
    block, _ = GGML_QUANT_SIZES[quant.tensor_type]
    if plan.shape[-1] % block:
        return Q.F16
    return quant.tensor_type


def n_bytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, size = GGML_QUANT_SIZES[qtype]
    n = int(np.prod(shape))
    return n // block * size


def encode(w: np.ndarray, qtype: GGMLQuantizationType, name: str) -> np.ndarray:
    """float32 -> the bytes (or typed array) of ``qtype``; refuse values F16 cannot hold."""
    if qtype == Q.F32:
        return np.ascontiguousarray(w, dtype=np.float32)
    if qtype == Q.F16:
        out = w.astype(np.float16)
        if not np.isfinite(out).all():
            raise ConversionError(f"tensor {name} has values outside the float16 range; use --gguf f32 or bf16")
        return out
    return quantize(np.ascontiguousarray(w, dtype=np.float32), qtype)


def add_metadata(writer: GGUFWriter, kv: dict[str, object]) -> None:
    """Typed header values: bool, uint32 for ints, float32, string, arrays by element type."""
    for key, value in kv.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, list):
            writer.add_array(key, value)
        else:
            raise TypeError(f"metadata {key}: unsupported value type {type(value).__name__}")


def write_direct(outputs: list[tuple[Path, QuantSpec]], kv: dict[str, object], plans: list[TensorPlan],
                 weights: MergedWeights, dims: Dims, progress: bool = False) -> dict[str, list[Fallback]]:
    """Write every direct output in one pass; returns the fallbacks per quant name."""
    writers: list[tuple[GGUFWriter, QuantSpec]] = []
    fallbacks: dict[str, list[Fallback]] = {q.name: [] for _, q in outputs}
    try:
        for path, quant in outputs:  # steps 1-3
            w = GGUFWriter(path, dims.arch)
            add_metadata(w, {**kv, "general.file_type": int(quant.file_type)})
            if quant.tensor_type not in (Q.F32, Q.F16, Q.BF16):
                w.add_quantization_version(GGML_QUANT_VERSION)
            for plan in plans:
                qtype = tensor_type(plan, quant)
                if plan.is_matrix and qtype != quant.tensor_type:
                    fallbacks[quant.name].append(Fallback(plan.gguf, quant.tensor_type.name, qtype.name))
                w.add_tensor_info(plan.gguf, plan.shape, np.dtype(np.float32), n_bytes(plan.shape, qtype),
                                  raw_dtype=qtype)
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            writers.append((w, quant))
        for plan in _progress(plans, progress, "+".join(q.name for _, q in outputs)):  # step 4
            data = to_gguf_layout(plan, weights[plan.hf], dims)
            if data.shape != plan.shape:
                raise ConversionError(f"tensor {plan.hf} has shape {data.shape}, expected {plan.shape}")
            for w, quant in writers:
                w.write_tensor_data(encode(data, tensor_type(plan, quant), plan.hf))
    finally:
        for w, _ in writers:
            w.close()
    return fallbacks


def _progress(items: list, enabled: bool, what: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=f"writing {what}", unit="tensor", leave=False)
