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
    "gemma3": (False, True),
}
# HF model_type spellings of the same decoder
_ALIASES = {"gemma3_text": "gemma3"}


def _unsupported(arch: str, detail: str = "") -> Exception:
    """The converter's typed error: one clear line at the CLI, nothing written."""
    from ..errors import UnsupportedArchitecture

    return UnsupportedArchitecture(arch, list(ARCHITECTURES), f"ONNX export: {detail}" if detail else
                                   "not supported for ONNX export")


@dataclass(frozen=True)
class DecoderSpec:
    """Shapes and constants of a decoder (llama, qwen2, qwen3, gemma3)."""

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
    # --- Gemma 3 (defaults: the llama family)
    activation: str = "silu"
    """``"silu"`` (SwiGLU) or ``"gelu_tanh"`` (GeGLU, tanh approximation)."""
    norm_plus_one: bool = False
    """RMSNorm multiplies by ``1 + w`` (Gemma); baked into the exported weights."""
    sandwich_norms: bool = False
    """Norms after attention and after the MLP too (Gemma's four norms per layer)."""
    embed_scale: float = 1.0
    """Token embeddings are multiplied by this (``sqrt(hidden)`` for Gemma)."""
    attn_scale: float = 0.0
    """Query scale; 0: ``1/sqrt(head_dim)``."""
    sliding_window: int = 0
    """Keys a sliding-window layer sees (itself included); 0: no such layers."""
    swa_layers: tuple[bool, ...] = ()
    """Per layer: is it a sliding-window (local) layer?"""
    rope_theta_swa: float = 0.0
    """RoPE base of the local layers (their own, unscaled)."""
    final_logit_softcap: float = 0.0
    """Logits become ``cap * tanh(logits / cap)`` when set."""

    @property
    def n_rep(self) -> int:
        return self.n_heads // self.n_kv_heads

    def is_sliding(self, i: int) -> bool:
        return bool(self.swa_layers) and self.swa_layers[i]

    def inv_freq(self, local: bool = False) -> np.ndarray:
        """RoPE inverse frequencies [head_dim/2], float32, with llama3/linear scaling applied;
        ``local``: the sliding-window layers' own base, unscaled."""
        d = self.head_dim
        theta = self.rope_theta_swa if local else self.rope_theta
        inv = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))
        if local:
            return inv.astype(np.float32)
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
    mt = _ALIASES.get(mt, mt)
    if mt not in ARCHITECTURES:
        raise _unsupported(str(mt))
    if mt == "gemma3":
        return _gemma3_spec(config)
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


def _gemma3_spec(config: dict) -> DecoderSpec:
    """Gemma 3 text: validated by the converter's own rules (``convert.archs``), so the
    ONNX graph and the numpy reference it is checked against read the same numbers."""
    from ..archs import ARCHS, dims_from_config
    from ..errors import UnsupportedArchitecture

    try:
        d = dims_from_config(config, ARCHS["gemma3"], int(config["vocab_size"]))
    except UnsupportedArchitecture as e:
        raise _unsupported("gemma3", e.detail or str(e)) from None
    return DecoderSpec(
        model_type="gemma3", n_layers=d.n_layers, hidden=d.hidden, n_heads=d.n_heads, n_kv_heads=d.n_kv_heads,
        head_dim=d.head_dim, intermediate=d.ffn, vocab=d.n_vocab, rms_eps=d.rms_eps, rope_theta=d.rope_theta,
        rope_scaling={"rope_type": "linear", "factor": d.rope_linear_factor} if d.rope_linear_factor != 1.0
        else None,
        max_positions=d.n_ctx, tie_embeddings=d.tied, qkv_bias=False, qk_norm=True, activation=d.activation,
        norm_plus_one=True, sandwich_norms=True, embed_scale=d.embed_scale, attn_scale=d.attn_scale,
        sliding_window=d.sliding_window, swa_layers=d.swa_layers, rope_theta_swa=d.rope_theta_swa,
        final_logit_softcap=d.final_logit_softcap)
