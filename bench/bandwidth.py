"""How close decode runs to the memory-bandwidth wall.

Generating one token reads every weight of the model once (the tied token
embedding in full, as the output head), so decode speed is bounded by
``read bandwidth / bytes per token``. ``bench latency`` reports both numbers
and the share of the measured bandwidth that decode achieves, so a user sees
whether a model is limited by memory (share near 1: only fewer bytes per token
or more tokens per pass help) or by something else.

The bandwidth is measured here, on the device, by reading a buffer much larger
than the caches with the same number of threads as the profile; numpy's
reductions release the GIL, so the threads read in parallel.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from thinkling.runtime.ggufheader import read_header


def weights_bytes_per_token(path: str | Path) -> int | None:
    """Bytes of tensor data in a GGUF file: what one decode step reads (KV cache
    excluded; it is small next to the weights at short contexts). None for other files."""
    try:
        return sum(t.n_bytes for t in read_header(path).tensors)
    except Exception:  # an ONNX file, or a header this reader does not parse
        return None


def read_bandwidth_gb_s(threads: int = 1, mib_per_thread: int = 256, repeats: int = 3) -> float:
    """Best of ``repeats`` parallel reads of ``mib_per_thread`` MiB per thread, in GB/s."""
    threads = max(1, threads)
    bufs = [np.ones(mib_per_thread << 17, dtype=np.float64) for _ in range(threads)]  # 8 bytes each
    nbytes = sum(b.nbytes for b in bufs)
    best = 0.0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(np.sum, bufs))  # touch every page first
        for _ in range(repeats):
            t0 = time.perf_counter()
            list(pool.map(np.sum, bufs))
            best = max(best, nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def decode_share(decode_tok_s: float | None, bytes_per_token: int | None, bandwidth_gb_s: float | None) -> dict:
    """``{"read_gb_s", "share"}``: the read rate decode implies and its share of the bandwidth."""
    if not decode_tok_s or not bytes_per_token or not bandwidth_gb_s:
        return {"read_gb_s": None, "share": None}
    read = decode_tok_s * bytes_per_token / 1e9
    return {"read_gb_s": round(read, 2), "share": round(read / bandwidth_gb_s, 3)}
