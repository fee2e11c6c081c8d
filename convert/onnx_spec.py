"""What the ONNX exporter needs to know about a decoder, read from HF ``config.json``.

Kept apart from the graph builder so the refusal of an unsupported model
happens before any weight is touched, with one clear message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# model_type -> (q/k/v projections carry a bias, per-head q/k RMSNorm)
ARCHITECTURES: dict[str, tuple[bool, bool]] = {
    "llama": (False, False),
    "qwen2": (True, False),
    "qwen3": (False, True),
}


def _unsupported(arch: str, detail: str = "") -> Exception:
    """The converter's typed error: one clear line at the CLI, nothing written."""
    from .errors import UnsupportedArchitecture

    return UnsupportedArchitecture(arch, list(ARCHITECTURES), f"ONNX export: {detail}" if detail else
                                   "not supported for ONNX export")


@dataclass(frozen=True)
class DecoderSpec:
    """Shapes and constants of a llama-family decoder (llama, qwen2, qwen3)."""

    model_type: str
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    rms_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_positions: int
    tie_embeddings: bool
    qkv_bias: bool
    qk_norm: bool

    @property
    def n_rep(self) -> int:
        return self.n_heads // self.n_kv_heads

    def inv_freq(self) -> np.ndarray:
        """RoPE inverse frequencies [head_dim/2], float32, with llama3/linear scaling applied."""
        d = self.head_dim
        inv = 1.0 / (self.rope_theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))
        sc = self.rope_scaling
        kind = (sc or {}).get("rope_type") or (sc or {}).get("type") or "default"
        if kind == "linear":
            inv = inv / float(sc["factor"])
        elif kind == "llama3":
            factor, lo, hi = float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
            old_ctx = float(sc["original_max_position_embeddings"])
            lo_wl, hi_wl = old_ctx / lo, old_ctx / hi
            wavelen = 2 * math.pi / inv
            scaled = np.where(wavelen > lo_wl, inv / factor, inv)
            smooth = (old_ctx / wavelen - lo) / (hi - lo)
            mid = (1 - smooth) * scaled / factor + smooth * scaled
            is_mid = (wavelen >= hi_wl) & (wavelen <= lo_wl)
            inv = np.where(is_mid, mid, scaled)
        return inv.astype(np.float32)


def decoder_spec(config: dict) -> DecoderSpec:
    """Validate an HF config for ONNX export; raise ``UnsupportedArchitecture`` with the reason."""
    mt = config.get("model_type")
    if mt not in ARCHITECTURES:
        raise _unsupported(str(mt))
    qkv_bias, qk_norm = ARCHITECTURES[mt]
    if mt == "llama":
        qkv_bias = bool(config.get("attention_bias", False))
        if config.get("mlp_bias"):
            raise _unsupported(mt, "mlp_bias=true")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise _unsupported(mt, f"hidden_act {act!r} (only silu)")
    rope_params = config.get("rope_parameters") or {}  # newer transformers nest rope settings here
    sc = config.get("rope_scaling")
    if sc is None and rope_params.get("rope_type") not in (None, "default"):
        sc = rope_params
    kind = (sc or {}).get("rope_type") or (sc or {}).get("type") or "default"
    if kind not in ("default", "linear", "llama3"):
        raise _unsupported(mt, f"rope_scaling type {kind!r}")
    if config.get("use_sliding_window") and mt in ("qwen2", "qwen3"):
        raise _unsupported(mt, "sliding-window attention")
    n_heads = int(config["num_attention_heads"])
    hidden = int(config["hidden_size"])
    n_kv = int(config.get("num_key_value_heads") or n_heads)
    if n_heads % n_kv:
        raise _unsupported(mt, f"num_attention_heads {n_heads} is not a multiple of num_key_value_heads {n_kv}")
    return DecoderSpec(
        model_type=mt,
        n_layers=int(config["num_hidden_layers"]),
        hidden=hidden,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        head_dim=int(config.get("head_dim") or hidden // n_heads),
        intermediate=int(config["intermediate_size"]),
        vocab=int(config["vocab_size"]),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)),
        rope_theta=float(config.get("rope_theta") or rope_params.get("rope_theta") or 10000.0),
        rope_scaling=sc,
        max_positions=int(config.get("max_position_embeddings", 4096)),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)),
        qkv_bias=qkv_bias,
        qk_norm=qk_norm,
    )
