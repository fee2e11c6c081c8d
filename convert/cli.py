"""``thinkling convert``: parse flags, call ``convert.pipeline.convert``, print a summary.

Errors are typed (``convert.errors``); ``runtime.cli.main`` turns them into one
line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .quantize import HEAD_TYPES


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="HF model (+ PEFT LoRA) -> merged GGUF files with a manifest and parity report",
        description="Merge a PEFT LoRA adapter into a Hugging Face model and write GGUF files "
                    "<name>-<quant>.gguf plus manifest.json into --out.")
    p.add_argument("src", help="Hugging Face model directory (config.json, *.safetensors, tokenizer), or a GGUF "
                               "file: requantized with llama.cpp, or with --lora dequantized and merged")
    p.add_argument("--lora", default=None, help="PEFT adapter directory to merge (adapter_config.json + "
                                                "adapter_model.safetensors)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--gguf", default="f16", help="comma-separated output types: f32, f16, bf16, q8_0, "
                                                 "q4_k_m, q5_k_m, q6_k (default: f16)")
    p.add_argument("--onnx", default="", help="comma-separated ONNX decoders to write as well: fp32, int4 "
                                              "(each in its own folder with genai_config.json; --gguf '' for ONNX only)")
    p.add_argument("--check", action="store_true", help="compare every output's next-token logits with an "
                                                        "independent numpy reference on fixed prompts")
    p.add_argument("--name", default=None, help="file name stem (default: the source folder's name)")
    p.add_argument("--threads", type=int, default=None, help="threads for quantization and the parity check")
    p.add_argument("--head-type", default=None, help="type of the token embedding / output head in the outputs "
                                                     f"llama.cpp quantizes: {', '.join(HEAD_TYPES)} "
                                                     "(default: llama.cpp's choice)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from thinkling.runtime.extras import require

    if not Path(args.src).is_file():  # an HF folder; requantizing a GGUF needs only llama.cpp
        require("thinkling convert", "convert", "safetensors", "tokenizers")
    if args.onnx:
        require("thinkling convert --onnx", "onnx", "onnx", "onnxruntime", "onnx_ir")
    from .parity import Parity, format_table
    from .pipeline import ConvertOptions, convert

    options = ConvertOptions(gguf=args.gguf, onnx=args.onnx, name=args.name, check=args.check,
                             threads=args.threads, head_type=args.head_type, progress=sys.stderr.isatty())
    manifest = convert(args.src, args.out, lora=args.lora, options=options)
    for f in manifest.files:
        note = f", {len(f.fallbacks)} tensors fell back to another type" if f.fallbacks else ""
        print(f"wrote {args.out}/{f.path} ({f.size_bytes / 1e6:.1f} MB{note})")
    if args.check:
        rows = [(f.path, Parity(**f.parity)) for f in manifest.files if f.parity]
        print(format_table(rows))
        tok = manifest.files[0].parity.get("tokenization_matches_hf") if manifest.files[0].parity else None
        if tok is not None:
            print(f"tokenization matches the HF tokenizer on the parity prompts: {'yes' if tok else 'NO'}")
    print(f"manifest: {args.out}/manifest.json")
    return 0
