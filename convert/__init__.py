"""thinkling convert: Hugging Face model (+ PEFT LoRA) -> merged -> GGUF, manifest, parity report.

``convert(src, out, lora=None, options=ConvertOptions())`` is the library entry
point (``convert.pipeline``); ``thinkling convert`` is its CLI (``convert.cli``),
and ``ConvertOptions``' fields are its flags. Imports are lazy so that
``thinkling --help`` stays fast.
"""

from __future__ import annotations

__all__ = ["convert", "ConvertOptions", "merge_lora", "Manifest"]


def __getattr__(name: str):
    if name == "convert":
        from .pipeline import convert
        return convert
    if name == "ConvertOptions":
        from .pipeline import ConvertOptions
        return ConvertOptions
    if name == "merge_lora":
        from .lora import merge_lora
        return merge_lora
    if name == "Manifest":
        from .manifest import Manifest
        return Manifest
    raise AttributeError(name)
