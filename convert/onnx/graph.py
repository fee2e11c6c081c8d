"""Build an ONNX decoder graph with a KV cache from HF-named weights, without torch.

Inputs / outputs (the names ONNX Runtime GenAI expects, ``genai_config.json``):

    input_ids                  int64 [batch, seq]
    attention_mask             int64 [batch, past + seq]
    position_ids               int64 [batch, seq]
    past_key_values.{i}.key    f32   [batch, n_kv_heads, past, head_dim]   (and .value)
    logits_to_keep             int64 [1]  optional (default 0: every position; k: the last k)
    ->
    logits                     f32   [batch, seq or k, vocab]
    hidden_last                f32   [batch, hidden]  the last position's state after the final norm
    present.{i}.key            f32   [batch, n_kv_heads, past + seq, head_dim]  (and .value)

Two attention lowerings share everything else:

* ``"plain"``: standard ONNX ops only (MatMul, Softmax, Where, Concat ...). The
  reference: every step is visible and mirrors the HF forward.
* ``"gqa"``: ``com.microsoft.GroupQueryAttention`` with rotary inside, one
  fused CPU kernel per layer.

RMSNorm and SiLU stay plain ops in both: onnxruntime's optimizer fuses them at
load (SimplifiedLayerNormalization, QuickGelu).

Weights are transposed to ``[in, out]`` so every projection is a ``MatMul``
against a constant -- the shape ``MatMulNBitsQuantizer`` turns into int4.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .spec import DecoderSpec

OPSET = 21  # int4 types (GatherBlockQuantized's input) need opset 21 / IR 10
MS_DOMAIN = "com.microsoft"

# HF tensor names, as data. {i} is the layer index.
GLOBAL_TENSORS = {
    "embed": "model.embed_tokens.weight",
    "final_norm": "model.norm.weight",
    "lm_head": "lm_head.weight",
}
LAYER_TENSORS = {
    "attn_norm": "model.layers.{i}.input_layernorm.weight",
    "q": "model.layers.{i}.self_attn.q_proj.weight",
    "k": "model.layers.{i}.self_attn.k_proj.weight",
    "v": "model.layers.{i}.self_attn.v_proj.weight",
    "o": "model.layers.{i}.self_attn.o_proj.weight",
    "q_bias": "model.layers.{i}.self_attn.q_proj.bias",
    "k_bias": "model.layers.{i}.self_attn.k_proj.bias",
    "v_bias": "model.layers.{i}.self_attn.v_proj.bias",
    "q_norm": "model.layers.{i}.self_attn.q_norm.weight",
    "k_norm": "model.layers.{i}.self_attn.k_norm.weight",
    "ffn_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "gate": "model.layers.{i}.mlp.gate_proj.weight",
    "up": "model.layers.{i}.mlp.up_proj.weight",
    "down": "model.layers.{i}.mlp.down_proj.weight",
}

# Gemma's four norms per layer: HF's post_attention_layernorm is a real post-attention
# norm there, and the pre-FFN norm has a name of its own.
SANDWICH_TENSORS = {
    "post_attn_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "ffn_norm": "model.layers.{i}.pre_feedforward_layernorm.weight",
    "post_ffn_norm": "model.layers.{i}.post_feedforward_layernorm.weight",
}

PAST_KEY, PAST_VALUE = "past_key_values.{i}.key", "past_key_values.{i}.value"
PRESENT_KEY, PRESENT_VALUE = "present.{i}.key", "present.{i}.value"
ATTENTION_KINDS = ("plain", "gqa")
LOGITS_TO_KEEP = "logits_to_keep"
# The input of the output head at the last position: the task-free signal the runtime's
# thinking gate reads (runtime.backends.onnx.HIDDEN_OUTPUT, llama.cpp's eval_hidden).
HIDDEN_LAST = "hidden_last"


class _Graph:
    """Nodes and initializers under construction, with unique names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0
        self._consts: dict[tuple, str] = {}

    def init(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def const(self, values, dtype=np.int64) -> str:
        """A small constant, shared by value."""
        arr = np.asarray(values, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._consts:
            self._consts[key] = self.init(f"const_{len(self._consts)}", arr)
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, name: str | None = None,
           domain: str | None = None, outputs: list[str] | None = None, **attrs):
        self._n += 1
        base = name or f"{op_type}_{self._n}"
        outs = outputs or [f"{base}/out{j}" for j in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=base, domain=domain, **attrs))
        return outs[0] if len(outs) == 1 else outs


class _Weights:
    """HF tensors as float32, fetched by table key; ``linear`` gives [in, out], ``norm``
    the multiplier the graph uses (``1 + w`` for Gemma, baked in at export)."""

    def __init__(self, tensors: Mapping[str, np.ndarray], spec: DecoderSpec):
        self.t = tensors
        self.layer = {**LAYER_TENSORS, **(SANDWICH_TENSORS if spec.sandwich_norms else {})}
        self.plus_one = spec.norm_plus_one

    def _name(self, key: str, i: int | None) -> str:
        return self.layer[key].format(i=i) if i is not None else GLOBAL_TENSORS[key]

    def get(self, key: str, i: int | None = None) -> np.ndarray | None:
        arr = self.t.get(self._name(key, i))
        return None if arr is None else np.asarray(arr, dtype=np.float32)

    def need(self, key: str, i: int | None = None) -> np.ndarray:
        arr = self.get(key, i)
        if arr is None:
            raise KeyError(f"missing tensor {self._name(key, i)}")
        return arr

    def linear(self, key: str, i: int) -> np.ndarray:
        return np.ascontiguousarray(self.need(key, i).T)

    def norm(self, key: str, i: int | None = None) -> np.ndarray:
        w = self.need(key, i)
        return w + np.float32(1.0) if self.plus_one else w


def _rms_norm(g: _Graph, x: str, weight: str, eps: float) -> str:
    """x * rsqrt(mean(x^2) + eps) * weight, in float32 like the HF forward."""
    sq = g.op("Pow", [x, g.const(2.0, np.float32)])
    mean = g.op("ReduceMean", [sq, g.const([-1])], keepdims=1)
    std = g.op("Sqrt", [g.op("Add", [mean, g.const(eps, np.float32)])])
    return g.op("Mul", [g.op("Div", [x, std]), weight])


def _linear(g: _Graph, x: str, w: np.ndarray, name: str, bias: np.ndarray | None = None) -> str:
    y = g.op("MatMul", [x, g.init(f"{name}.weight", w)], name=f"{name}/MatMul")
    if bias is not None:
        y = g.op("Add", [y, g.init(f"{name}.bias", bias)], name=f"{name}/Add")
    return y


def _rotate(g: _Graph, x: str, cos: str, sin: str, half: int) -> str:
    """RoPE, non-interleaved (HF rotate_half): x*cos + cat(-x2, x1)*sin. x: [B, h, S, D]."""
    x1, x2 = g.op("Split", [x, g.const([half, half])], n_out=2, axis=-1)
    rot = g.op("Concat", [g.op("Neg", [x2]), x1], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rot, sin])])


class _Shared:
    """Per-graph tensors every layer uses: RoPE tables and the attention mask.

    With sliding-window layers (Gemma 3) the plain lowering has a second set,
    ``local``: the local layers' RoPE base and a mask that also hides keys more
    than ``window - 1`` positions back. The KV cache keeps every position on
    every layer (one cache shape, so truncation and ORT GenAI stay simple); the
    window is applied by the mask.
    """

    def __init__(self, g: _Graph, spec: DecoderSpec, attention: str):
        if attention == "plain":
            self._plain(g, spec)
        else:
            self._gqa(g, spec)

    def _rope_tables(self, g: _Graph, inv_freq: np.ndarray, name: str) -> tuple[str, str]:
        # cos/sin [B, 1, S, D] from position_ids: freqs = pos * inv_freq, emb = cat(freqs, freqs)
        pos = g.op("Cast", ["position_ids"], to=TensorProto.FLOAT)
        pos = g.op("Unsqueeze", [pos, g.const([-1])])                      # [B, S, 1]
        freqs = g.op("Mul", [pos, g.init(name, inv_freq[None, None, :])])
        emb = g.op("Concat", [freqs, freqs], axis=-1)                       # [B, S, D]
        return (g.op("Unsqueeze", [g.op("Cos", [emb]), g.const([1])]),     # [B, 1, S, D]
                g.op("Unsqueeze", [g.op("Sin", [emb]), g.const([1])]))

    def rope(self, spec: DecoderSpec, i: int) -> tuple[str, str]:
        return self.local_rope if spec.is_sliding(i) else (self.cos, self.sin)

    def mask_for(self, spec: DecoderSpec, i: int) -> str:
        return self.local_mask if spec.is_sliding(i) else self.mask

    def _plain(self, g: _Graph, spec: DecoderSpec) -> None:
        self.cos, self.sin = self._rope_tables(g, spec.inv_freq(), "rope.inv_freq")
        # causal + padding mask, bool [B, 1, S, T]: key j visible from query i iff j <= past + i
        past = g.op("Shape", [PAST_KEY.format(i=0)], start=2, end=3)
        seq = g.op("Shape", ["input_ids"], start=1, end=2)
        total = g.op("Add", [past, seq])
        past_s = g.op("Squeeze", [past, g.const([0])])
        total_s = g.op("Squeeze", [total, g.const([0])])
        q_pos = g.op("Unsqueeze", [g.op("Range", [past_s, total_s, g.const(1)]), g.const([1])])  # [S, 1]
        k_pos = g.op("Unsqueeze", [g.op("Range", [g.const(0), total_s, g.const(1)]), g.const([0])])  # [1, T]
        causal = g.op("LessOrEqual", [k_pos, q_pos])                        # [S, T]
        pad = g.op("Cast", ["attention_mask"], to=TensorProto.BOOL)
        pad = g.op("Unsqueeze", [pad, g.const([1, 2])])                     # [B, 1, 1, T]
        self.mask = g.op("And", [causal, pad])                              # [B, 1, S, T]
        self.neg = g.const(np.finfo(np.float32).min, np.float32)
        if any(spec.swa_layers):
            self.local_rope = self._rope_tables(g, spec.inv_freq(local=True), "rope.inv_freq_local")
            # sliding window: key j visible from query i iff i - window < j <= i
            lo = g.op("Sub", [q_pos, g.const(spec.sliding_window)])         # [S, 1]
            recent = g.op("Greater", [k_pos, lo])                           # [S, T]
            self.local_mask = g.op("And", [self.mask, recent])

    def _gqa(self, g: _Graph, spec: DecoderSpec) -> None:
        # GroupQueryAttention takes cos/sin tables [max_pos, D/2] and derives positions
        # from seqlens_k (= tokens so far - 1, per batch row) and the past length.
        t = np.arange(spec.max_positions, dtype=np.float32)[:, None] * spec.inv_freq()[None, :]
        self.cos = g.init("rope.cos_cache", np.cos(t).astype(np.float32))
        self.sin = g.init("rope.sin_cache", np.sin(t).astype(np.float32))
        n = g.op("ReduceSum", ["attention_mask", g.const([1])], keepdims=0)
        self.seqlens_k = g.op("Cast", [g.op("Sub", [n, g.const(1)])], to=TensorProto.INT32)
        total = g.op("Shape", ["attention_mask"], start=1, end=2)
        self.total_len = g.op("Cast", [g.op("Squeeze", [total, g.const([0])])], to=TensorProto.INT32)


def _attention_plain(g, spec: DecoderSpec, sh: _Shared, i: int, q: str, k: str, v: str) -> str:
    """q [B,S,H*D], k/v [B,S,Hkv*D] -> [B,S,H*D]; writes present.{i}.*"""
    H, Hkv, D = spec.n_heads, spec.n_kv_heads, spec.head_dim
    q = g.op("Transpose", [g.op("Reshape", [q, g.const([0, 0, H, D])])], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [g.op("Reshape", [k, g.const([0, 0, Hkv, D])])], perm=[0, 2, 1, 3])
    v = g.op("Transpose", [g.op("Reshape", [v, g.const([0, 0, Hkv, D])])], perm=[0, 2, 1, 3])
    if spec.qk_norm:
        q = _rms_norm(g, q, f"layers.{i}.q_norm.weight", spec.rms_eps)
        k = _rms_norm(g, k, f"layers.{i}.k_norm.weight", spec.rms_eps)
    cos, sin = sh.rope(spec, i)
    q = _rotate(g, q, cos, sin, D // 2)
    k = _rotate(g, k, cos, sin, D // 2)
    k = g.op("Concat", [PAST_KEY.format(i=i), k], axis=2, outputs=[PRESENT_KEY.format(i=i)])
    v = g.op("Concat", [PAST_VALUE.format(i=i), v], axis=2, outputs=[PRESENT_VALUE.format(i=i)])
    # Grouped heads without repeating K/V: query heads of one KV head are contiguous,
    # so [B, H, S, D] reshapes to [B, Hkv, rep*S, D] and meets K/V [B, Hkv, T, D] directly.
    q = g.op("Mul", [q, g.const(spec.attn_scale or 1.0 / np.sqrt(D), np.float32)])
    qg = g.op("Reshape", [q, g.const([0, Hkv, -1, D])])
    scores = g.op("MatMul", [qg, g.op("Transpose", [k], perm=[0, 1, 3, 2])])  # [B, Hkv, rep*S, T]
    scores = g.op("Reshape", [scores, g.const([0, H, -1, 0])])               # [B, H, S, T]
    probs = g.op("Softmax", [g.op("Where", [sh.mask_for(spec, i), scores, sh.neg])], axis=-1)
    probs = g.op("Reshape", [probs, g.const([0, Hkv, -1, 0])])
    out = g.op("MatMul", [probs, v])                                          # [B, Hkv, rep*S, D]
    out = g.op("Reshape", [out, g.const([0, H, -1, D])])
    out = g.op("Transpose", [out], perm=[0, 2, 1, 3])                         # [B, S, H, D]
    return g.op("Reshape", [out, g.const([0, 0, H * D])])


def _attention_gqa(g, spec: DecoderSpec, sh: _Shared, i: int, q: str, k: str, v: str) -> str:
    """The same computation as one fused com.microsoft.GroupQueryAttention node."""
    out, _, _ = g.op("GroupQueryAttention",
                [q, k, v, PAST_KEY.format(i=i), PAST_VALUE.format(i=i), sh.seqlens_k, sh.total_len,
                 sh.cos, sh.sin],
                outputs=[f"layers.{i}.attn/out", PRESENT_KEY.format(i=i), PRESENT_VALUE.format(i=i)],
                domain=MS_DOMAIN, name=f"layers.{i}.attn/GroupQueryAttention",
                num_heads=spec.n_heads, kv_num_heads=spec.n_kv_heads, do_rotary=1,
                rotary_interleaved=0, scale=float(1.0 / np.sqrt(spec.head_dim)))
    return out


def _mlp(g: _Graph, spec: DecoderSpec, W: _Weights, i: int, h: str) -> str:
    """act(gate(h)) * up(h) -> down: SwiGLU, or GeGLU (tanh GELU) for Gemma."""
    p = f"layers.{i}"
    gate = _linear(g, h, W.linear("gate", i), f"{p}.gate_proj")
    up = _linear(g, h, W.linear("up", i), f"{p}.up_proj")
    if spec.activation == "gelu_tanh":
        act = g.op("Gelu", [gate], approximate="tanh")
    else:
        act = g.op("Mul", [gate, g.op("Sigmoid", [gate])])  # silu
    return _linear(g, g.op("Mul", [act, up]), W.linear("down", i), f"{p}.down_proj")


def _layer(g: _Graph, spec: DecoderSpec, W: _Weights, sh: _Shared, i: int, x: str,
           attention: str) -> str:
    p = f"layers.{i}"
    h = _rms_norm(g, x, g.init(f"{p}.attn_norm.weight", W.norm("attn_norm", i)), spec.rms_eps)
    q = _linear(g, h, W.linear("q", i), f"{p}.q_proj", W.get("q_bias", i))
    k = _linear(g, h, W.linear("k", i), f"{p}.k_proj", W.get("k_bias", i))
    v = _linear(g, h, W.linear("v", i), f"{p}.v_proj", W.get("v_bias", i))
    if spec.qk_norm:
        g.init(f"{p}.q_norm.weight", W.norm("q_norm", i))
        g.init(f"{p}.k_norm.weight", W.norm("k_norm", i))
    attn = (_attention_plain if attention == "plain" else _attention_gqa)(g, spec, sh, i, q, k, v)
    attn = _linear(g, attn, W.linear("o", i), f"{p}.o_proj")
    if spec.sandwich_norms:
        attn = _rms_norm(g, attn, g.init(f"{p}.post_attn_norm.weight", W.norm("post_attn_norm", i)), spec.rms_eps)
    x = g.op("Add", [x, attn])
    h = _rms_norm(g, x, g.init(f"{p}.ffn_norm.weight", W.norm("ffn_norm", i)), spec.rms_eps)
    mlp = _mlp(g, spec, W, i, h)
    if spec.sandwich_norms:
        mlp = _rms_norm(g, mlp, g.init(f"{p}.post_ffn_norm.weight", W.norm("post_ffn_norm", i)), spec.rms_eps)
    return g.op("Add", [x, mlp])


def _head(g: _Graph, spec: DecoderSpec, W: _Weights, x: str, embed: np.ndarray) -> None:
    """Final norm and output head -> ``logits``, for the last ``logits_to_keep`` rows only;
    the final-norm state of the last position -> ``hidden_last``.

    ``logits_to_keep`` is an input with a default (0 = every position, k = the last k): a
    prompt's prefill needs only the last row, and the head is the biggest MatMul of a
    large-vocabulary model (Gemma: 262k x 640). ORT GenAI does not feed it and gets every row.
    """
    g.init(LOGITS_TO_KEEP, np.array([0], dtype=np.int64))
    start = g.op("Neg", [LOGITS_TO_KEEP])
    x = g.op("Slice", [x, start, g.const([np.iinfo(np.int64).max]), g.const([1])])  # [B, k or S, hidden]
    x = _rms_norm(g, x, g.init("norm.weight", W.norm("final_norm")), spec.rms_eps)
    # hidden_last [B, hidden]: the last row is the last position whatever logits_to_keep is
    last = g.op("Slice", [x, g.const([-1]), g.const([np.iinfo(np.int64).max]), g.const([1])])
    g.op("Squeeze", [last, g.const([1])], outputs=[HIDDEN_LAST], name="hidden_last/Squeeze")
    head = W.get("lm_head")  # absent when tied (an adapter's replacement can untie it)
    if head is None:
        head = embed  # tied: a transposed copy, so the head stays a quantizable MatMul
    cap = spec.final_logit_softcap
    logits = g.op("MatMul", [x, g.init("lm_head.weight", np.ascontiguousarray(head.T))],
                  name="lm_head/MatMul", outputs=None if cap else ["logits"])
    if cap:  # cap * tanh(logits / cap)
        capped = g.op("Tanh", [g.op("Div", [logits, g.const(cap, np.float32)])])
        g.op("Mul", [capped, g.const(cap, np.float32)], outputs=["logits"])


def _graph_io(spec: DecoderSpec, vocab: int) -> tuple[list, list]:
    """The graph's declared inputs and outputs (ORT GenAI's names)."""
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    kv = ["batch", spec.n_kv_heads, "past_sequence_length", spec.head_dim]
    kv_out = ["batch", spec.n_kv_heads, "total_sequence_length", spec.head_dim]
    inputs = [helper.make_tensor_value_info("input_ids", i64, ["batch", "sequence_length"]),
              helper.make_tensor_value_info("attention_mask", i64, ["batch", "total_sequence_length"]),
              helper.make_tensor_value_info("position_ids", i64, ["batch", "sequence_length"]),
              helper.make_tensor_value_info(LOGITS_TO_KEEP, i64, [1])]
    outputs = [helper.make_tensor_value_info("logits", f32, ["batch", "logits_length", vocab]),
               helper.make_tensor_value_info(HIDDEN_LAST, f32, ["batch", spec.hidden])]
    for i in range(spec.n_layers):
        for name in (PAST_KEY, PAST_VALUE):
            inputs.append(helper.make_tensor_value_info(name.format(i=i), f32, kv))
        for name in (PRESENT_KEY, PRESENT_VALUE):
            outputs.append(helper.make_tensor_value_info(name.format(i=i), f32, kv_out))
    return inputs, outputs


def build_decoder(spec: DecoderSpec, tensors: Mapping[str, np.ndarray], *,
                  attention: str = "plain") -> onnx.ModelProto:
    """Return the fp32 decoder ``ModelProto`` for HF-named ``tensors`` (any float dtype).

    ``attention`` picks the lowering (``"plain"`` or ``"gqa"``); both take and
    return the same inputs and outputs.
    """
    if attention not in ATTENTION_KINDS:
        raise ValueError(f"attention must be one of {ATTENTION_KINDS}")
    if spec.qk_norm and attention == "gqa":
        raise ValueError("qk-norm models need attention='plain' (GQA applies rotary before any norm hook)")
    g, W = _Graph(), _Weights(tensors, spec)
    embed = W.need("embed")
    vocab = embed.shape[0]  # padded vocabularies: the tensor is the truth
    sh = _Shared(g, spec, attention)
    x = g.op("Gather", [g.init("embed_tokens.weight", embed), "input_ids"], axis=0)
    if spec.embed_scale != 1.0:  # Gemma: sqrt(hidden), applied to the lookup only (not to a tied head)
        x = g.op("Mul", [x, g.const(spec.embed_scale, np.float32)])
    for i in range(spec.n_layers):
        x = _layer(g, spec, W, sh, i, x, attention)
    _head(g, spec, W, x, embed)
    inputs, outputs = _graph_io(spec, vocab)
    graph = helper.make_graph(g.nodes, f"thinkling-{spec.model_type}", inputs, outputs, g.inits)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="thinkling.convert")
    model.ir_version = 10  # readable by onnxruntime >= 1.20 (the onnx extra's floor)
    return model
