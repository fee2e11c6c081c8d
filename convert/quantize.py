"""K-quants through llama.cpp's own quantizer (``llama_model_quantize`` in
llama-cpp-python's C bindings), from the F16 file; no external binary.

llama.cpp picks per-tensor types itself (Q4_K_M mixes Q4_K and Q6_K on
purpose). It falls back to a non-K type where a row does not divide into
256-element super-blocks, which is common in small students; we read the
written file's tensor types back and report those.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections import Counter
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from thinkling.runtime.ggufheader import read_header

from .errors import QuantizationFailed, UnknownQuant, UnsupportedSource
from .writer import Fallback, QuantSpec

log = logging.getLogger(__name__)
Q = GGMLQuantizationType
K_TYPES = {Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K}


# --head-type values -> the GGML type given to token_embd (and to output.weight where the
# model has an untied head). In a small model with a large vocabulary the head is most of
# the bytes read per generated token; where decode is bandwidth-bound a smaller head helps,
# but on the 2-core development VM it is compute-bound and did not (docs/bench.md).
# K types need rows that divide into 256; Gemma 3 270M's are 640 wide, so its head can be
# Q8_0, Q5_1, Q5_0, IQ4_NL, Q4_1 or Q4_0 (32-wide blocks) but not a K type.
HEAD_TYPES = {"f16": Q.F16, "q8_0": Q.Q8_0, "q6_k": Q.Q6_K, "q5_k": Q.Q5_K, "q4_k": Q.Q4_K,
              "q5_1": Q.Q5_1, "q5_0": Q.Q5_0, "iq4_nl": Q.IQ4_NL, "q4_1": Q.Q4_1, "q4_0": Q.Q4_0}


def parse_head_type(head: str | None) -> GGMLQuantizationType | None:
    """``"q4_k"`` -> the GGML type; None or "" -> None (llama.cpp's choice for the mixture)."""
    if not head:
        return None
    name = head.strip().lower()
    if name not in HEAD_TYPES:
        raise UnknownQuant(f"head type {name}", list(HEAD_TYPES))
    return HEAD_TYPES[name]


def check_head_type(head: GGMLQuantizationType | None, row: int, source: Path) -> None:
    """Refuse a head type whose blocks do not divide the head's rows (``row`` =
    n_embd): llama.cpp would abort the process on it, not return an error."""
    if head is None:
        return
    block = GGML_QUANT_SIZES[head][0]
    if row % block:
        fits = [n for n, t in HEAD_TYPES.items() if row % GGML_QUANT_SIZES[t][0] == 0]
        raise UnsupportedSource(str(source), f"head type {head.name.lower()} needs rows divisible by {block}; "
                                             f"this model's are {row} wide (types that fit: {', '.join(fits)})")


class _KeepErrors(logging.Filter):
    """Holds back llama.cpp's ERROR records (kept in ``lines``); lets the rest through."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            self.lines.append(record.getMessage().strip())
            return False
        return True


def quantize_kquant(src: Path, dst: Path, quant: QuantSpec, threads: int | None = None,
                    head: GGMLQuantizationType | None = None, allow_requantize: bool = False) -> None:
    """Quantize the GGUF ``src`` into ``dst`` as ``quant`` (e.g. Q4_K_M); ``head``
    sets the token-embedding/output type; ``allow_requantize`` lets a quantized
    source be dequantized and quantized again (tensors already in their target
    type are copied as they are)."""
    from thinkling.runtime.backends.llama_cpp import c_api, set_fields  # routes llama.cpp's log into Python logging

    C = c_api()
    params = C.llama_model_quantize_default_params()
    values = {"ftype": int(quant.file_type), "nthread": threads or os.cpu_count() or 1,
              "allow_requantize": allow_requantize}
    if head is not None:
        values.update(token_embedding_type=int(head), output_tensor_type=int(head))
    set_fields(params, values)
    log.info("quantizing %s -> %s (%s%s)", src.name, dst.name, quant.name, f", head {head.name}" if head else "")
    native = logging.getLogger("thinkling.runtime.llama_cpp.native")
    errors = _KeepErrors()
    native.addFilter(errors)  # llama.cpp's own error line becomes the reason, not a second stderr line
    try:
        rc = C.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    finally:
        native.removeFilter(errors)
    if rc != 0 or not dst.is_file():
        why = f"llama.cpp: {errors.lines[-1]}" if errors.lines else f"llama_model_quantize returned {rc}"
        raise QuantizationFailed(quant.name, f"{why} (is the disk full? see the log with -v)")


def tensor_types(path: Path) -> dict[str, str]:
    """GGUF tensor name -> GGML type name, read from the header."""
    return {t.name: Q(t.ggml_type).name for t in read_header(path).tensors}


def type_counts(types: dict[str, str]) -> dict[str, int]:
    return dict(sorted(Counter(types.values()).items()))


# llama.cpp's substitutes when a row does not divide into 256-element super-blocks; read
# backwards they tell which K type a tensor was meant to get (Q4_K_M wants Q6_K for some).
_SUBSTITUTE_FOR = {"Q4_0": "Q3_K", "Q5_0": "Q4_K", "Q5_1": "Q5_K", "Q8_0": "Q6_K"}


def kquant_fallbacks(types: dict[str, str], matrices: set[str], quant: QuantSpec) -> list[Fallback]:
    """Matrices llama.cpp wrote in a non-K type although a K-quant was asked for."""
    k_names = {t.name for t in K_TYPES}
    return [Fallback(name, _SUBSTITUTE_FOR.get(got, quant.tensor_type.name), got)
            for name, got in types.items() if name in matrices and got not in k_names]
