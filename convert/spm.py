"""Read a SentencePiece ``tokenizer.model`` without the sentencepiece package.

The file is a protobuf ``ModelProto``; we need a handful of fields, so a
minimal wire-format reader is enough (field numbers from sentencepiece_model.proto):

    ModelProto      1: pieces (repeated SentencePiece)  2: trainer_spec  3: normalizer_spec
    SentencePiece   1: piece (string)  2: score (float)  3: type (enum, default NORMAL=1)
    TrainerSpec     3: model_type (UNIGRAM=1, BPE=2)  35: byte_fallback
                    40: unk_id  41: bos_id  42: eos_id  43: pad_id
    NormalizerSpec  1: name  3: add_dummy_prefix (default true)  4: remove_extra_whitespaces (default true)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CorruptFile

MODEL_UNIGRAM, MODEL_BPE = 1, 2


@dataclass
class SentencePieceModel:
    pieces: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    types: list[int] = field(default_factory=list)  # same numbering as GGUF token types
    model_type: int = MODEL_UNIGRAM
    byte_fallback: bool = False
    unk_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    pad_id: int = -1
    add_dummy_prefix: bool = True
    remove_extra_whitespaces: bool = True
    normalizer: str = ""


class _WireError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise _WireError("varint runs past the end")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _WireError("varint too long")


def _fields(buf: bytes):
    """Yield (field number, value): int for varints, bytes for everything else."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _WireError("field runs past the end")
        yield number, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_model(path: Path) -> SentencePieceModel:
    """Parse ``tokenizer.model``; CorruptFile if it is not a SentencePiece model."""
    m = SentencePieceModel()
    try:
        for number, value in _fields(path.read_bytes()):
            if number == 1:
                piece, score, ptype = "", 0.0, 1
                for n, v in _fields(value):
                    if n == 1:
                        piece = v.decode("utf-8")
                    elif n == 2:
                        (score,) = struct.unpack("<f", v)
                    elif n == 3:
                        ptype = v
                m.pieces.append(piece)
                m.scores.append(score)
                m.types.append(ptype)
            elif number == 2:
                for n, v in _fields(value):
                    if n == 3:
                        m.model_type = v
                    elif n == 35:
                        m.byte_fallback = bool(v)
                    elif n in (40, 41, 42, 43):
                        setattr(m, {40: "unk_id", 41: "bos_id", 42: "eos_id", 43: "pad_id"}[n], _signed(v))
            elif number == 3:
                for n, v in _fields(value):
                    if n == 1:
                        m.normalizer = v.decode("utf-8")
                    elif n == 3:
                        m.add_dummy_prefix = bool(v)
                    elif n == 4:
                        m.remove_extra_whitespaces = bool(v)
    except (_WireError, UnicodeDecodeError, struct.error) as e:
        raise CorruptFile(str(path), f"not a SentencePiece model ({e})") from None
    if not m.pieces:
        raise CorruptFile(str(path), "not a SentencePiece model (no pieces)")
    return m
