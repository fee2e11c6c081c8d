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
import shutil
import time
from pathlib import Path

from gguf import GGMLQuantizationType as Q

from thinkling.runtime.errors import InvalidModelFile
from thinkling.runtime.modelinfo import check_gguf

from .errors import CorruptFile
from .manifest import FileEntry, Manifest, now_iso, sha256_file, tool_versions, write_json_atomic
from .parity import PROMPTS, compare, teacher_forced_logits, tokenize
from .quantize import check_head_type, quantize_kquant, tensor_types, type_counts
from .staging import Staging
from .writer import QuantSpec

log = logging.getLogger(__name__)

HEAD_TENSORS = ("token_embd.weight", "output.weight")


def output_name(stem: str, quant: QuantSpec, head: Q | None) -> str:
    return f"{stem}-{quant.name}" + (f"-head-{head.name.lower()}" if head is not None else "") + ".gguf"


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
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Staging(out)
    try:
        entries = []
        for quant in quants:
            final = output_name(stem, quant, head)
            t0 = time.perf_counter()
            quantize_kquant(src, stage.path(final), quant, threads, head, allow_requantize=True)
            log.info("wrote %s in %.1fs", final, time.perf_counter() - t0)
            entries.append(FileEntry(path=final, quant=quant.name, sha256="", size_bytes=0,
                                     tensor_types=type_counts(tensor_types(stage.tmp[final]))))
        if check:
            tokens = tokenize(src, PROMPTS, threads)
            ref = teacher_forced_logits(src, tokens, threads)
            for entry in entries:
                entry.parity = compare(teacher_forced_logits(stage.tmp[entry.path], tokens, threads), ref).to_dict()
        for entry in entries:
            entry.sha256 = sha256_file(stage.tmp[entry.path])
            entry.size_bytes = stage.tmp[entry.path].stat().st_size
        stage.commit([e.path for e in entries])
    except BaseException:
        stage.discard()
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
