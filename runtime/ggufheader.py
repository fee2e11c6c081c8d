"""A lean reader for the GGUF header: metadata scalars and tensor extents.

Why hand-written: gguf-py's GGUFReader turns every element of every metadata
array into numpy objects, which takes ~12 s for Gemma 3's 262k-token
vocabulary on a laptop core. We only need scalars and where tensor data ends
(to reject truncated files), so we walk the header and skip arrays by length.
Type sizes and enums still come from gguf-py's constants.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

_SCALAR = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?", GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class HeaderError(ValueError):
    pass


@dataclass
class TensorExtent:
    name: str
    ggml_type: int
    n_elements: int
    offset: int  # relative to the data section
    n_bytes: int


@dataclass
class GGUFHeader:
    version: int
    metadata: dict = field(default_factory=dict)  # scalars and strings; arrays as their length
    tensors: list[TensorExtent] = field(default_factory=list)
    data_start: int = 0

    @property
    def data_end(self) -> int:
        return self.data_start + max((t.offset + t.n_bytes for t in self.tensors), default=0)


class _Cursor:
    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise HeaderError("header ends early")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise HeaderError("header ends early")
        (val,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return val

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 30:
            raise HeaderError("implausible string length")
        return self.take(n).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        for _ in range(count):
            n = self.unpack("<Q")
            if self.pos + n > len(self.buf):
                raise HeaderError("header ends early")
            self.pos += n

    def value(self, vtype: int):
        vtype = GGUFValueType(vtype)
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            itype, count = GGUFValueType(self.unpack("<I")), self.unpack("<Q")
            if itype == GGUFValueType.STRING:
                self.skip_strings(count)
            elif itype == GGUFValueType.ARRAY:
                raise HeaderError("nested arrays are not supported")
            else:
                self.take(struct.calcsize(_SCALAR[itype]) * count)
            return ("array", int(count))
        return self.unpack(_SCALAR[vtype])


def read_header(path: str | Path, max_bytes: int = 64 << 20) -> GGUFHeader:
    """Parse the header of a GGUF file; raises HeaderError on anything malformed."""
    with open(path, "rb") as f:
        buf = f.read(max_bytes)
    cur = _Cursor(buf)
    if cur.take(4) != b"GGUF":
        raise HeaderError("bad magic (not a GGUF file)")
    hdr = GGUFHeader(version=cur.unpack("<I"))
    if hdr.version not in (2, 3):
        raise HeaderError(f"unsupported GGUF version {hdr.version}")
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    try:
        for _ in range(n_kv):
            key = cur.string()
            hdr.metadata[key] = cur.value(cur.unpack("<I"))
        for _ in range(n_tensors):
            name = cur.string()
            dims = [cur.unpack("<Q") for _ in range(cur.unpack("<I"))]
            gtype, offset = cur.unpack("<I"), cur.unpack("<Q")
            n_el = 1
            for d in dims:
                n_el *= d
            block, tsize = GGML_QUANT_SIZES[GGMLQuantizationType(gtype)]
            hdr.tensors.append(TensorExtent(name, gtype, n_el, offset, n_el * tsize // block))
    except (KeyError, ValueError) as e:
        if isinstance(e, HeaderError):
            raise
        raise HeaderError(f"corrupt header: {e}") from None
    align = int(hdr.metadata.get("general.alignment", 32))
    hdr.data_start = (cur.pos + align - 1) // align * align
    return hdr
