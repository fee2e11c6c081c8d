"""Reading a Hugging Face model directory without torch.

Tensors are read straight from the safetensors files: an 8-byte little-endian
header length, a JSON header (dtype, shape, byte range per tensor), then the raw
data. Reading it ourselves lets us (1) reject a truncated or corrupt file
before anything is written, (2) read bfloat16, which numpy has no dtype for,
and (3) load one tensor at a time so peak memory stays near the largest tensor.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConversionError, CorruptFile, MissingFile

# safetensors dtype -> (numpy dtype used to read the bytes, bytes per element)
_DTYPES = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "F64": (np.float64, 8)}
_MAX_HEADER = 100 << 20


@dataclass(frozen=True)
class TensorRef:
    """Where one tensor's bytes are: file, absolute byte offset, dtype, shape (row-major)."""

    file: Path
    offset: int
    dtype: str
    shape: tuple[int, ...]

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> dict[str, TensorRef]:
    """Parse and validate a safetensors header; every tensor must lie inside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CorruptFile(str(path), "truncated: shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, _MAX_HEADER):
            raise CorruptFile(str(path), f"truncated or not safetensors: header claims {n} bytes, file has {size}")
        try:
            meta = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptFile(str(path), "the header is not valid JSON") from None
    base = 8 + n
    refs: dict[str, TensorRef] = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        dtype, shape = info.get("dtype"), tuple(info.get("shape", ()))
        begin, end = info.get("data_offsets", (0, 0))
        if dtype not in _DTYPES:
            raise ConversionError(f"{path}: tensor {name} has dtype {dtype}; only F32, F16, BF16 and F64 "
                                  "are supported (quantized checkpoints must be dequantized first)")
        ref = TensorRef(path, base + begin, dtype, shape)
        if end - begin != ref.n_elements * _DTYPES[dtype][1]:
            raise CorruptFile(str(path), f"tensor {name}: byte range does not match its shape {list(shape)}")
        if base + end > size:
            raise CorruptFile(str(path), f"truncated: tensor {name} ends at byte {base + end}, file has {size}")
        refs[name] = ref
    return refs


def load_tensor(ref: TensorRef) -> np.ndarray:
    """The tensor as a new float32 array (bf16 widened by placing its bits in the high half)."""
    np_dtype, _ = _DTYPES[ref.dtype]
    with open(ref.file, "rb") as f:
        f.seek(ref.offset)
        raw = np.fromfile(f, dtype=np.dtype(np_dtype).newbyteorder("<"), count=ref.n_elements)
    if raw.size != ref.n_elements:
        raise CorruptFile(str(ref.file), "file changed while reading (tensor data ends early)")
    if ref.dtype == "BF16":
        out = (raw.astype(np.uint32) << 16).view(np.float32)
    else:
        out = raw.astype(np.float32)
    return out.reshape(ref.shape)


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise MissingFile(str(path), what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFile(str(path), f"invalid JSON ({e})") from None


def safetensors_files(directory: Path, index_name: str, single_name: str) -> list[Path]:
    """The weight files of a directory: from the shard index if present, else the single file."""
    index = directory / index_name
    if index.is_file():
        weight_map = read_json(index, "shard index").get("weight_map", {})
        files = sorted({directory / f for f in weight_map.values()})
        for f in files:
            if not f.is_file():
                raise MissingFile(str(f), f"listed in {index_name}")
        return files
    single = directory / single_name
    if single.is_file():
        return [single]
    others = sorted(directory.glob("*.safetensors"))
    if others:
        return others
    if list(directory.glob("*.bin")):
        raise ConversionError(f"{directory}: only safetensors weights are supported (found .bin files)")
    raise MissingFile(str(single), "model weights")


class HFModel:
    """A Hugging Face model directory: config plus lazily loaded tensors."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise MissingFile(str(self.path), "model directory")
        self.config = read_json(self.path / "config.json", "model config")
        self.weight_files = safetensors_files(self.path, "model.safetensors.index.json", "model.safetensors")
        self.tensors: dict[str, TensorRef] = {}
        for f in self.weight_files:
            self.tensors.update(read_header(f))

    def has(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def load(self, name: str) -> np.ndarray:
        return load_tensor(self.tensors[name])

    def dtypes(self) -> list[str]:
        return sorted({r.dtype for r in self.tensors.values()})

    def files(self) -> list[Path]:
        """Every file the conversion reads, for the manifest's hashes."""
        names = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer.model",
                 "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "chat_template.jinja",
                 "chat_template.json", "model.safetensors.index.json", "thinkling.json"]
        found = [self.path / n for n in names if (self.path / n).is_file()]
        return sorted(found + self.weight_files)
