"""Random-weight Hugging Face models built with numpy alone, for tests and measurements.

    python -m thinkling.convert.testing OUT --preset qwen2.5-0.5b --tokenizer tests/fixtures/convert/qwen2-bpe/base

writes ``config.json``, ``model.safetensors`` (bf16 or f16) and copies the
tokenizer files of an existing model directory; the converter pads the
vocabulary up to ``vocab_size``. Weights are N(0, 1/fan_in) so activations
stay O(1) through the layers, like a trained model's and unlike the
deliberately wide fixture weights.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

# Public facts of Qwen2.5-0.5B's config.json.
QWEN25_05B = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
    "hidden_act": "silu", "use_sliding_window": False, "torch_dtype": "bfloat16",
}
SMALL_QWEN2 = {**QWEN25_05B, "hidden_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 512,
               "max_position_embeddings": 1024}
PRESETS = {"qwen2.5-0.5b": QWEN25_05B, "small-qwen2": SMALL_QWEN2}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "chat_template.jinja",
                   "special_tokens_map.json", "generation_config.json")


def _shapes(c: dict) -> dict[str, tuple[int, ...]]:
    h, ffn, n_vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    shapes = {"model.embed_tokens.weight": (n_vocab, h), "model.norm.weight": (h,)}
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (h, q),
            p + "mlp.gate_proj.weight": (ffn, h), p + "mlp.up_proj.weight": (ffn, h),
            p + "mlp.down_proj.weight": (h, ffn),
        })
    if not c.get("tie_word_embeddings"):
        shapes["lm_head.weight"] = (n_vocab, h)
    return shapes


def _to_bf16_bytes(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (round to nearest even), as uint16."""
    u = x.astype(np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def make_random_qwen2(out: str | Path, config: dict, tokenizer_dir: str | Path, seed: int = 0,
                      dtype: str = "bf16") -> Path:
    """Write a random-weight Qwen2 model directory; returns it. (Qwen2 layout: qkv biases.)"""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    shapes = _shapes(config)
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16" if dtype == "bf16" else "F16", "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(out / "model.safetensors", "wb") as f:  # streamed: one tensor in memory at a time
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for name, shape in shapes.items():
            if len(shape) == 1:
                w = (1.0 + 0.1 * rng.standard_normal(shape)) if name.endswith("norm.weight") \
                    else 0.02 * rng.standard_normal(shape)
            else:
                w = rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[1])
            data = _to_bf16_bytes(w) if dtype == "bf16" else w.astype(np.float16)
            f.write(data.tobytes())
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in TOKENIZER_FILES:
        if (Path(tokenizer_dir) / name).is_file():
            shutil.copyfile(Path(tokenizer_dir) / name, out / name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="Write a random-weight Qwen2 model directory (numpy only).")
    ap.add_argument("out")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="qwen2.5-0.5b")
    ap.add_argument("--tokenizer", required=True, help="directory whose tokenizer files are copied")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = make_random_qwen2(args.out, PRESETS[args.preset], args.tokenizer, args.seed)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
