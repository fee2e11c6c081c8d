"""An independent numpy forward pass over the merged HF weights (no torch, no llama.cpp).

It is the parity reference: written from the architectures' published
definitions in HF's conventions (half-split RoPE, Gemma's ``1 + w`` norms and
embedding scale applied here, not baked into weights), so a wrong permutation
or norm offset in the GGUF writer shows up as a disagreement. Float32 like
transformers' own fp32 forward; only the last position's logits (and final-norm
state) are produced.

All prompts travel together: their tokens are stacked into one ``[N, hidden]``
matrix for the projections (one matmul per weight per layer), and attention
runs per prompt on its own rows. Memory: one layer's weights at a time, the
output head multiplied in row chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .archs import EMBED, HEAD, Dims

_HEAD_CHUNK = 16384


def reference_logits(weights: Mapping[str, np.ndarray], dims: Dims, prompts: Sequence[Sequence[int]]) -> np.ndarray:
    """Next-token logits ``[len(prompts), n_vocab]`` (float32) for each token-id list."""
    return reference_forward(weights, dims, prompts)[0]


def reference_forward(weights: Mapping[str, np.ndarray], dims: Dims,
                      prompts: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(logits [len(prompts), n_vocab], hidden [len(prompts), hidden])`` of each prompt's last
    position: ``hidden`` is the final-norm state the output head multiplies (what llama.cpp's
    embeddings and the ONNX ``hidden_last`` output give)."""
    ids = np.concatenate([np.asarray(p, dtype=np.int64) for p in prompts])
    ends = np.cumsum([len(p) for p in prompts])
    segments = list(zip(np.concatenate([[0], ends[:-1]]), ends))  # rows of each prompt
    h = weights[EMBED][ids] * np.float32(dims.embed_scale)  # [N, hidden]
    for i in range(dims.n_layers):
        h = _block(h, _layer(weights, i), dims, i, segments)
    x = _rms_norm(h[ends - 1], weights["model.norm.weight"], dims)  # last position of each prompt
    head = weights[HEAD] if HEAD in weights else weights[EMBED]
    logits = np.concatenate([x @ head[s:s + _HEAD_CHUNK].T for s in range(0, head.shape[0], _HEAD_CHUNK)], axis=-1)
    if dims.final_logit_softcap:
        cap = dims.final_logit_softcap
        logits = np.tanh(logits / cap) * cap
    return logits.astype(np.float32), x.astype(np.float32)


def _layer(weights: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    prefix = f"model.layers.{i}."
    return {k[len(prefix):]: weights[k] for k in weights if k.startswith(prefix)}


def _rms_norm(x: np.ndarray, w: np.ndarray, d: Dims) -> np.ndarray:
    w = w + np.float32(1.0) if d.norm_plus_one else w
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + np.float32(d.rms_eps)) * w


def _linear(x: np.ndarray, lw: dict, name: str) -> np.ndarray:
    y = x @ lw[f"{name}.weight"].T
    bias = lw.get(f"{name}.bias")
    return y + bias if bias is not None else y


def _act(x: np.ndarray, kind: str) -> np.ndarray:
    if kind == "silu":
        return x / (1.0 + np.exp(-x))
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))  # gelu, tanh approx.


def _rope(x: np.ndarray, theta: float, factor: float) -> np.ndarray:
    """Half-split RoPE: x [T, heads, head_dim]; position p rotates pair (i, i + d/2) by p/factor * theta^(-2i/d)."""
    t, _, d = x.shape
    inv_freq = 1.0 / theta ** (np.arange(0, d, 2, dtype=np.float64) / d)
    ang = (np.arange(t, dtype=np.float64) / factor)[:, None] * inv_freq[None, :]  # [T, d/2]
    cos, sin = np.cos(ang).astype(np.float32)[:, None, :], np.sin(ang).astype(np.float32)[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attention(x: np.ndarray, lw: dict, d: Dims, i: int, segments) -> np.ndarray:
    """Causal (and, on sliding layers, windowed) attention of each prompt over its own rows."""
    n = x.shape[0]
    q = _linear(x, lw, "self_attn.q_proj").reshape(n, d.n_heads, d.head_dim)
    k = _linear(x, lw, "self_attn.k_proj").reshape(n, d.n_kv_heads, d.head_dim)
    v = _linear(x, lw, "self_attn.v_proj").reshape(n, d.n_kv_heads, d.head_dim)
    if "self_attn.q_norm.weight" in lw:  # qwen3 / gemma3: per-head RMSNorm before RoPE
        q = _rms_norm(q, lw["self_attn.q_norm.weight"], d)
        k = _rms_norm(k, lw["self_attn.k_norm.weight"], d)
    sliding = bool(d.swa_layers) and d.swa_layers[i]
    theta, factor = (d.rope_theta_swa, 1.0) if sliding else (d.rope_theta, d.rope_linear_factor)
    group = d.n_heads // d.n_kv_heads
    scale = np.float32(d.attn_scale or d.head_dim ** -0.5)
    out = np.empty((n, d.n_heads * d.head_dim), dtype=np.float32)
    for a, b in segments:
        qs, ks = _rope(q[a:b], theta, factor), _rope(k[a:b], theta, factor)
        ks, vs = np.repeat(ks, group, axis=1), np.repeat(v[a:b], group, axis=1)  # [T, heads, hd]
        scores = np.einsum("qhd,khd->hqk", qs, ks) * scale
        qi, ki = np.arange(b - a)[:, None], np.arange(b - a)[None, :]
        allowed = ki <= qi
        if sliding:
            allowed &= ki > qi - d.sliding_window
        scores = np.where(allowed[None], scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[a:b] = np.einsum("hqk,khd->qhd", p, vs).reshape(b - a, -1)
    return _linear(out, lw, "self_attn.o_proj")


def _mlp(x: np.ndarray, lw: dict, d: Dims) -> np.ndarray:
    gate = _act(_linear(x, lw, "mlp.gate_proj"), d.activation)
    return _linear(gate * _linear(x, lw, "mlp.up_proj"), lw, "mlp.down_proj")


def _block(h: np.ndarray, lw: dict, d: Dims, i: int, segments) -> np.ndarray:
    if "pre_feedforward_layernorm.weight" in lw:  # Gemma: norms before and after attention and MLP
        a = _rms_norm(_attention(_rms_norm(h, lw["input_layernorm.weight"], d), lw, d, i, segments),
                      lw["post_attention_layernorm.weight"], d)
        h = h + a
        m = _rms_norm(_mlp(_rms_norm(h, lw["pre_feedforward_layernorm.weight"], d), lw, d),
                      lw["post_feedforward_layernorm.weight"], d)
        return h + m
    h = h + _attention(_rms_norm(h, lw["input_layernorm.weight"], d), lw, d, i, segments)
    return h + _mlp(_rms_norm(h, lw["post_attention_layernorm.weight"], d), lw, d)
