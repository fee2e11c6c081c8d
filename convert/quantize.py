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

from gguf import GGMLQuantizationType

from runtime.ggufheader import read_header

from .errors import QuantizationFailed
from .writer import Fallback, QuantSpec

log = logging.getLogger(__name__)
Q = GGMLQuantizationType
K_TYPES = {Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K}


def quantize_kquant(src: Path, dst: Path, quant: QuantSpec, threads: int | None = None) -> None:
    """Quantize the F16 GGUF ``src`` into ``dst`` as ``quant`` (e.g. Q4_K_M)."""
    from runtime.backends.llama_cpp import c_api  # routes llama.cpp's log into Python logging

    C = c_api()
    params = C.llama_model_quantize_default_params()
    params.ftype = int(quant.file_type)
    params.nthread = threads or os.cpu_count() or 1
    log.info("quantizing %s -> %s (%s)", src.name, dst.name, quant.name)
    rc = C.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0 or not dst.is_file():
        raise QuantizationFailed(quant.name, f"llama_model_quantize returned {rc} (see the log with -v)")


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
