"""An independent numpy forward pass over the merged HF weights (no torch, no llama.cpp).

It is the parity reference: written from the architectures' published
definitions in HF's conventions (half-split RoPE, Gemma's ``1 + w`` norms and
embedding scale applied here, not baked into weights), so a wrong permutation
or norm offset in the GGUF writer shows up as a disagreement. Float64
throughout; only the last position's logits are produced.

Memory: one layer's weights at a time (hidden states of all prompts are kept
between layers), and the output head is multiplied in row chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .archs import EMBED, HEAD, Dims

_HEAD_CHUNK = 16384


def reference_logits(weights: Mapping[str, np.ndarray], dims: Dims, prompts: Sequence[Sequence[int]]) -> np.ndarray:
    """Next-token logits ``[len(prompts), n_vocab]`` (float32) for each token-id list."""
    emb = weights[EMBED]
    hs = [emb[np.asarray(ids)].astype(np.float64) * dims.embed_scale for ids in prompts]
    del emb
    for i in range(dims.n_layers):
        lw = _layer(weights, i)
        hs = [_block(h, lw, dims, i) for h in hs]
    last = np.stack([h[-1] for h in hs])
    x = _rms_norm(last, weights["model.norm.weight"], dims)
    head = weights[HEAD] if HEAD in weights else weights[EMBED]
    logits = np.concatenate([x @ head[s:s + _HEAD_CHUNK].astype(np.float64).T
                             for s in range(0, head.shape[0], _HEAD_CHUNK)], axis=-1)
    if dims.final_logit_softcap:
        cap = dims.final_logit_softcap
        logits = np.tanh(logits / cap) * cap
    return logits.astype(np.float32)


def _layer(weights: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    prefix = f"model.layers.{i}."
    return {k[len(prefix):]: weights[k].astype(np.float64) for k in weights if k.startswith(prefix)}


def _rms_norm(x: np.ndarray, w: np.ndarray, d: Dims) -> np.ndarray:
    w = w.astype(np.float64) + (1.0 if d.norm_plus_one else 0.0)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + d.rms_eps) * w


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
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attention(x: np.ndarray, lw: dict, d: Dims, i: int) -> np.ndarray:
    t = x.shape[0]
    q = _linear(x, lw, "self_attn.q_proj").reshape(t, d.n_heads, d.head_dim)
    k = _linear(x, lw, "self_attn.k_proj").reshape(t, d.n_kv_heads, d.head_dim)
    v = _linear(x, lw, "self_attn.v_proj").reshape(t, d.n_kv_heads, d.head_dim)
    if "self_attn.q_norm.weight" in lw:  # qwen3 / gemma3: per-head RMSNorm before RoPE
        q = _rms_norm(q, lw["self_attn.q_norm.weight"], d)
        k = _rms_norm(k, lw["self_attn.k_norm.weight"], d)
    sliding = bool(d.swa_layers) and d.swa_layers[i]
    theta, factor = (d.rope_theta_swa, 1.0) if sliding else (d.rope_theta, d.rope_linear_factor)
    q, k = _rope(q, theta, factor), _rope(k, theta, factor)
    group = d.n_heads // d.n_kv_heads
    k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)  # [T, heads, hd]
    scale = d.attn_scale or d.head_dim ** -0.5
    scores = np.einsum("qhd,khd->hqk", q, k) * scale
    qi, ki = np.arange(t)[:, None], np.arange(t)[None, :]
    allowed = ki <= qi
    if sliding:
        allowed &= ki > qi - d.sliding_window
    scores = np.where(allowed[None], scores, -np.inf)
    scores -= scores.max(-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(-1, keepdims=True)
    out = np.einsum("hqk,khd->qhd", p, v).reshape(t, d.n_heads * d.head_dim)
    return _linear(out, lw, "self_attn.o_proj")


def _mlp(x: np.ndarray, lw: dict, d: Dims) -> np.ndarray:
    gate = _act(_linear(x, lw, "mlp.gate_proj"), d.activation)
    return _linear(gate * _linear(x, lw, "mlp.up_proj"), lw, "mlp.down_proj")


def _block(h: np.ndarray, lw: dict, d: Dims, i: int) -> np.ndarray:
    if "pre_feedforward_layernorm.weight" in lw:  # Gemma: norms before and after attention and MLP
        a = _rms_norm(_attention(_rms_norm(h, lw["input_layernorm.weight"], d), lw, d, i),
                      lw["post_attention_layernorm.weight"], d)
        h = h + a
        m = _rms_norm(_mlp(_rms_norm(h, lw["pre_feedforward_layernorm.weight"], d), lw, d),
                      lw["post_feedforward_layernorm.weight"], d)
        return h + m
    h = h + _attention(_rms_norm(h, lw["input_layernorm.weight"], d), lw, d, i)
    return h + _mlp(_rms_norm(h, lw["post_attention_layernorm.weight"], d), lw, d)
