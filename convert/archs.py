"""Architectures as data: Hugging Face tensor names -> GGUF names, and config -> GGUF metadata.

Each supported architecture is one ``ArchSpec`` row. The names on the GGUF side
are what llama.cpp loads for that architecture; a test checks them against
gguf-py's own table. Adding an architecture means adding a row, a metadata
rule if it has special hyperparameters, and its forward pass in ``reference.py``.

Conventions carried into the tables (facts about the formats, not choices):
- llama.cpp's ``llama`` runs RoPE on interleaved pairs while HF rotates the two
  halves of each head, so q/k rows are permuted for ``llama`` (``permute_qk``);
  qwen2, qwen3 and gemma3 use the half-split ("NeoX") order in llama.cpp too.
- Gemma's RMSNorm computes ``x * (1 + w)``; llama.cpp multiplies by the stored
  weight, so every Gemma norm is written as ``1 + w`` (``norm_plus_one``).
- Gemma scales the token embeddings by ``sqrt(hidden)``; llama.cpp does that
  at run time, so the embedding is written unscaled.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .errors import UnsupportedArchitecture

GLOBAL_TENSORS = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"
IGNORED = (re.compile(r".*\.rotary_emb\.inv_freq$"),)

_ATTN = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
}
_QKV_BIAS = {
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
}
_MLP = {
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_MLP_BIAS = {
    "mlp.gate_proj.bias": "ffn_gate.bias",
    "mlp.up_proj.bias": "ffn_up.bias",
    "mlp.down_proj.bias": "ffn_down.bias",
}
_PRE_NORMS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",  # HF's name; it is the pre-FFN norm
}
_QK_NORM = {
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
}
_SANDWICH_NORMS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


@dataclass(frozen=True)
class ArchSpec:
    """One architecture: which HF classes it covers and how its tensors are named in GGUF."""

    gguf_arch: str
    hf_classes: tuple[str, ...]
    layer_tensors: dict[str, str]  # HF name under model.layers.{i}. -> GGUF name under blk.{i}.
    optional: frozenset[str] = frozenset()  # layer tensors a checkpoint may lack (biases)
    permute_qk: bool = False
    norm_plus_one: bool = False
    activation: str = "silu"


ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec(
        gguf_arch="llama",
        hf_classes=("LlamaForCausalLM",),
        layer_tensors={**_PRE_NORMS, **_ATTN, **_QKV_BIAS, "self_attn.o_proj.bias": "attn_output.bias",
                       **_MLP, **_MLP_BIAS},
        optional=frozenset({*_QKV_BIAS, "self_attn.o_proj.bias", *_MLP_BIAS}),
        permute_qk=True,
    ),
    "qwen2": ArchSpec(
        gguf_arch="qwen2",
        hf_classes=("Qwen2ForCausalLM",),
        layer_tensors={**_PRE_NORMS, **_ATTN, **_QKV_BIAS, **_MLP},
    ),
    "qwen3": ArchSpec(
        gguf_arch="qwen3",
        hf_classes=("Qwen3ForCausalLM",),
        layer_tensors={**_PRE_NORMS, **_ATTN, **_QK_NORM, **_MLP},
    ),
    "gemma3": ArchSpec(
        gguf_arch="gemma3",
        hf_classes=("Gemma3ForCausalLM",),
        layer_tensors={**_SANDWICH_NORMS, **_ATTN, **_QK_NORM, **_MLP},
        norm_plus_one=True,
        activation="gelu_tanh",
    ),
}
_BY_CLASS = {cls: spec for spec in ARCHS.values() for cls in spec.hf_classes}
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_tanh": "gelu_tanh"}


def spec_for(config: dict) -> ArchSpec:
    """The ArchSpec for a config.json, or UnsupportedArchitecture."""
    classes = config.get("architectures") or []
    for cls in classes:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    name = classes[0] if classes else str(config.get("model_type", "unknown"))
    raise UnsupportedArchitecture(name, sorted(_BY_CLASS))


@dataclass(frozen=True)
class Dims:
    """The hyperparameters both the GGUF writer and the reference forward pass need."""

    arch: str
    n_vocab: int
    hidden: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    ffn: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    rope_linear_factor: float = 1.0
    tied: bool = False
    activation: str = "silu"
    norm_plus_one: bool = False
    embed_scale: float = 1.0
    attn_scale: float = 0.0  # 0: 1/sqrt(head_dim)
    sliding_window: int = 0  # 0: no sliding-window layers
    swa_layers: tuple[bool, ...] = field(default_factory=tuple)
    rope_theta_swa: float = 0.0
    final_logit_softcap: float = 0.0


def _rope(config: dict, arch: str, layer_type: str | None = None) -> tuple[float, float]:
    """(theta, linear factor) from ``rope_parameters`` (transformers 5) or ``rope_theta``/``rope_scaling``."""
    params = config.get("rope_parameters")
    if isinstance(params, dict) and layer_type and isinstance(params.get(layer_type), dict):
        params = params[layer_type]
    if isinstance(params, dict) and "rope_theta" in params:
        theta, kind, factor = params["rope_theta"], params.get("rope_type", "default"), params.get("factor")
    else:
        scaling = config.get("rope_scaling") or {}
        theta = config.get("rope_theta", 10000.0)
        if layer_type == "sliding_attention":
            theta, scaling = config.get("rope_local_base_freq", 10000.0), {}
        kind, factor = scaling.get("rope_type") or scaling.get("type") or "default", scaling.get("factor")
    if kind == "default":
        return float(theta), 1.0
    if kind == "linear" and factor:
        return float(theta), float(factor)
    raise UnsupportedArchitecture(arch, detail=f"RoPE scaling {kind!r} is not supported (only linear)")


def dims_from_config(config: dict, spec: ArchSpec, n_vocab: int) -> Dims:
    """Validate and collect hyperparameters; ``n_vocab`` is the embedding's row count."""
    arch = spec.gguf_arch
    act = _ACTIVATIONS.get(config.get("hidden_activation") or config.get("hidden_act") or "silu")
    if act != spec.activation:
        raise UnsupportedArchitecture(arch, detail=f"activation {config.get('hidden_act')!r}")
    hidden, n_heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    head_dim = int(config.get("head_dim") or hidden // n_heads)
    theta, factor = _rope(config, arch, "full_attention" if arch == "gemma3" else None)
    if config.get("use_sliding_window") and arch != "gemma3":
        raise UnsupportedArchitecture(arch, detail="sliding-window attention")
    tie = config.get("tie_word_embeddings")
    dims = Dims(
        arch=arch, n_vocab=n_vocab, hidden=hidden, n_layers=int(config["num_hidden_layers"]),
        n_heads=n_heads, n_kv_heads=int(config.get("num_key_value_heads") or n_heads), head_dim=head_dim,
        ffn=int(config["intermediate_size"]), n_ctx=int(config.get("max_position_embeddings") or 2048),
        rms_eps=float(config.get("rms_norm_eps", 1e-6)), rope_theta=theta, rope_linear_factor=factor,
        tied=bool(tie) if tie is not None else True, activation=act, norm_plus_one=spec.norm_plus_one,
    )
    if arch == "gemma3":
        dims = _gemma3_dims(config, dims)
    return dims


def _gemma3_dims(config: dict, dims: Dims) -> Dims:
    """Gemma 3: llama.cpp hard-codes parts of its recipe; refuse configs that differ."""
    from dataclasses import replace

    n = dims.n_layers
    expect = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(n)]
    layer_types = config.get("layer_types") or expect
    if list(layer_types) != expect:
        raise UnsupportedArchitecture("gemma3", detail="layer_types differ from llama.cpp's 5 sliding : 1 global")
    if config.get("attn_logit_softcapping"):
        raise UnsupportedArchitecture("gemma3", detail="attention logit soft-capping")
    theta_swa, factor_swa = _rope(config, "gemma3", "sliding_attention")
    if theta_swa != 10000.0 or factor_swa != 1.0:
        raise UnsupportedArchitecture("gemma3", detail="llama.cpp fixes the local RoPE base at 10000, unscaled")
    # llama.cpp: 1/sqrt(head_dim), except 1/sqrt(hidden/heads) for the 62-layer (27B) model
    scalar = dims.hidden // dims.n_heads if n == 62 else dims.head_dim
    if float(config.get("query_pre_attn_scalar", scalar)) != float(scalar):
        raise UnsupportedArchitecture("gemma3", detail=f"query_pre_attn_scalar must be {scalar} for llama.cpp")
    window = int(config.get("sliding_window") or 0)
    if window <= 0:
        raise UnsupportedArchitecture("gemma3", detail="sliding_window is missing")
    return replace(dims, embed_scale=math.sqrt(dims.hidden), attn_scale=scalar ** -0.5, sliding_window=window,
                   swa_layers=tuple(t == "sliding_attention" for t in layer_types), rope_theta_swa=theta_swa,
                   final_logit_softcap=float(config.get("final_logit_softcapping") or 0.0))


def gguf_metadata(d: Dims) -> dict[str, object]:
    """Architecture keys of the GGUF header (ints become uint32, floats float32)."""
    a = d.arch
    kv: dict[str, object] = {
        f"{a}.vocab_size": d.n_vocab,
        f"{a}.context_length": d.n_ctx,
        f"{a}.embedding_length": d.hidden,
        f"{a}.block_count": d.n_layers,
        f"{a}.feed_forward_length": d.ffn,
        f"{a}.attention.head_count": d.n_heads,
        f"{a}.attention.head_count_kv": d.n_kv_heads,
        f"{a}.attention.key_length": d.head_dim,
        f"{a}.attention.value_length": d.head_dim,
        f"{a}.attention.layer_norm_rms_epsilon": d.rms_eps,
        f"{a}.rope.dimension_count": d.head_dim,
        f"{a}.rope.freq_base": d.rope_theta,
    }
    if d.rope_linear_factor != 1.0:
        kv[f"{a}.rope.scaling.type"] = "linear"
        kv[f"{a}.rope.scaling.factor"] = d.rope_linear_factor
    if d.sliding_window:
        kv[f"{a}.attention.sliding_window"] = d.sliding_window
    if d.final_logit_softcap:
        kv[f"{a}.final_logit_softcapping"] = d.final_logit_softcap
    return kv
