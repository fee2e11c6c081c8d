"""Model facts read from files without loading weights: GGUF metadata through
gguf-py, sizes and quantization, and a structural check that turns a truncated
or corrupt GGUF into ``InvalidModelFile`` before llama.cpp ever sees it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InvalidModelFile
from .ggufheader import GGUFHeader, HeaderError, read_header


@dataclass
class ModelInfo:
    name: str
    path: str
    format: str
    architecture: str | None = None
    parameters: int | None = None
    quantization: str | None = None
    size_bytes: int = 0
    context_length: int | None = None
    chat_template: bool = False
    source: str = "metadata"  # "manifest" when the converter's manifest supplied facts

    def to_dict(self) -> dict:
        return asdict(self)


def _header(path: Path) -> GGUFHeader:
    try:
        return read_header(path)
    except HeaderError as e:
        raise InvalidModelFile(str(path), str(e)) from None


def check_gguf(path: str | os.PathLike) -> GGUFHeader:
    """Raise ``InvalidModelFile`` unless ``path`` is a structurally whole GGUF:
    right magic, parseable header, every tensor's data inside the file.
    Returns the parsed header so callers need not read it again."""
    path = Path(path)
    size = path.stat().st_size
    hdr = _header(path)
    if not hdr.tensors:
        raise InvalidModelFile(str(path), "no tensors")
    if hdr.data_end > size:
        raise InvalidModelFile(str(path), f"truncated: tensor data needs {hdr.data_end} bytes, file has {size}")
    return hdr


def gguf_info(name: str, path: str | os.PathLike, manifest_entry: dict | None = None,
              header: GGUFHeader | None = None) -> ModelInfo:
    """Architecture, parameter count, quantization and size of a GGUF file
    (``header``: one already parsed by ``check_gguf``)."""
    from gguf import GGMLQuantizationType, LlamaFileType

    path = Path(path)
    hdr = header or _header(path)
    meta = hdr.metadata
    arch = meta.get("general.architecture")
    ftype = meta.get("general.file_type")
    quant = None
    if ftype is not None:
        try:
            quant = LlamaFileType(int(ftype)).name.removeprefix("MOSTLY_")
        except ValueError:
            quant = str(ftype)
    if quant is None and hdr.tensors:
        quant = GGMLQuantizationType(hdr.tensors[0].ggml_type).name
    info = ModelInfo(
        name=name, path=str(path), format="gguf", architecture=arch,
        parameters=int(sum(t.n_elements for t in hdr.tensors)),
        quantization=quant, size_bytes=path.stat().st_size,
        context_length=meta.get(f"{arch}.context_length") if arch else None,
        chat_template="tokenizer.chat_template" in meta,
    )
    if manifest_entry:
        info.quantization = manifest_entry.get("quant", info.quantization)
        info.source = "manifest"
    return info


def onnx_info(name: str, path: str | os.PathLike, manifest: dict | None, manifest_entry: dict | None) -> ModelInfo:
    """Architecture, quantization and size of an ONNX model from the converter's
    manifest beside it (no weights are read, so the parameter count stays unknown:
    the manifest does not record it, and int4 weights are packed)."""
    path = Path(path)
    entry = manifest_entry or {}
    return ModelInfo(
        name=name, path=str(path), format="onnx",
        architecture=(manifest or {}).get("architecture"),
        quantization=entry.get("quant"),
        size_bytes=entry.get("size_bytes") or path.stat().st_size,
        source="manifest" if manifest_entry else "metadata",
    )
