"""A GGUF source -> GGUF files of other types, with llama.cpp's own quantizer.

``thinkling convert model.gguf --out dir --gguf q4_k_m --head-type q4_k``
requantizes an existing GGUF (the embedded default, a student) without going
back to the HF weights: ``llama_model_quantize`` with ``allow_requantize``
dequantizes a tensor and quantizes it again only where the chosen type
differs; tensors already in their target type are copied byte for byte. The
main use is the token embedding / output head, which in a small model with a
large vocabulary is most of the bytes read per generated token (Gemma 3
270M: 178 MB of 253 MB at Q8_0).

``--check`` compares each output with the source file itself, at every
position of the parity prompts (teacher-forced): max |dlogit|, top-1 agreement
and KL, the same table as the HF path.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q

from runtime.errors import InvalidModelFile
from runtime.modelinfo import check_gguf

from .errors import CorruptFile
from .manifest import FileEntry, Manifest, now_iso, sha256_file, tool_versions, write_json_atomic
from .parity import PROMPTS, compare, tokenize
from .quantize import check_head_type, quantize_kquant, tensor_types, type_counts
from .writer import QuantSpec

log = logging.getLogger(__name__)

HEAD_TENSORS = ("token_embd.weight", "output.weight")


def output_name(stem: str, quant: QuantSpec, head: Q | None) -> str:
    return f"{stem}-{quant.name}" + (f"-head-{head.name.lower()}" if head is not None else "") + ".gguf"


def teacher_forced_logits(path: Path, token_lists: list[list[int]], threads: int) -> np.ndarray:
    """Next-token logits at every position of every prompt, ``[positions, n_vocab]``.

    One token per evaluation (the backend returns the last position's logits),
    so it is slow on big models; the parity prompts are short.
    """
    from runtime.backends import BackendOptions, open_backend

    n_ctx = max(64, max(len(t) for t in token_lists) + 8)
    b = open_backend("llama_cpp", str(path), BackendOptions(n_ctx=n_ctx, n_threads=threads))
    try:
        rows = []
        for tokens in token_lists:
            b.truncate(0)
            for tok in tokens:
                rows.append(np.array(b.eval([tok]), dtype=np.float32))  # copy: eval returns a view
        return np.stack(rows)
    finally:
        b.close()


@dataclass(frozen=True)
class _Job:
    final: str
    quant: QuantSpec


def requantize(src: Path, out: Path, quants: list[QuantSpec], *, head: Q | None, name: str | None,
               check: bool, threads: int) -> Manifest:
    """Write ``quants`` of the GGUF ``src`` into ``out`` (temporary names, renamed
    after every step succeeded) with ``manifest.json``; see the module doc."""
    try:
        header = check_gguf(src)
    except InvalidModelFile as e:  # truncated, bad magic, tensors past the end
        raise CorruptFile(str(src), e.reason) from None
    arch = str(header.metadata.get("general.architecture", "unknown"))
    n_embd = header.metadata.get(f"{arch}.embedding_length")
    if head is not None and isinstance(n_embd, int):
        check_head_type(head, n_embd, src)
    stem = name or src.stem
    jobs = [_Job(output_name(stem, q, head), q) for q in quants]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tmp = {j.final: out / f".{j.final}.{os.getpid()}.partial" for j in jobs}
    try:
        entries = []
        for job in jobs:
            t0 = time.perf_counter()
            quantize_kquant(src, tmp[job.final], job.quant, threads, head, allow_requantize=True)
            log.info("wrote %s in %.1fs", job.final, time.perf_counter() - t0)
            types = tensor_types(tmp[job.final])
            entries.append(FileEntry(path=job.final, quant=job.quant.name, sha256="", size_bytes=0,
                                     tensor_types=type_counts(types)))
        if check:
            tokens = tokenize(src, PROMPTS, threads)
            ref = teacher_forced_logits(src, tokens, threads)
            for entry in entries:
                entry.parity = compare(teacher_forced_logits(tmp[entry.path], tokens, threads), ref).to_dict()
        for entry in entries:
            entry.sha256 = sha256_file(tmp[entry.path])
            entry.size_bytes = tmp[entry.path].stat().st_size
        for entry in entries:
            os.replace(tmp.pop(entry.path), out / entry.path)
    except BaseException:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    src_types = tensor_types(src)
    source = {"path": str(src), "files": {src.name: sha256_file(src)}, "lora": None, "format": "gguf",
              "head_types": {t: src_types[t] for t in HEAD_TENSORS if t in src_types}}
    manifest = Manifest(name=stem, architecture=arch, source=source, files=entries,
                        tools=tool_versions(), created=now_iso())
    thinkling = src.parent / "thinkling.json"
    if thinkling.is_file() and thinkling.resolve() != (out / "thinkling.json").resolve():
        shutil.copyfile(thinkling, out / "thinkling.json")
    write_json_atomic(out / "manifest.json", manifest.to_dict())
    return manifest
