"""``convert()``: HF base (+ PEFT LoRA) -> merged -> GGUF files, manifest, parity report.

The steps, in order:

1. read and validate everything (config, weights headers, adapter, tokenizer,
   tensor plan) before a byte is written, so bad input fails fast and clean;
2. write the direct types (F16, Q8_0, ...) in one pass, to temporary names;
3. derive K-quants from the F16 file with llama.cpp and read their types back;
   ONNX decoders (``convert.onnx``) are written into temporary folders beside them;
4. optionally check parity of every output, GGUF and ONNX, against one run of
   the numpy reference;
5. hash, rename everything into place, write ``manifest.json`` and copy
   ``thinkling.json``.

Any error before step 5 removes every temporary file and folder, so ``out``
never holds a half-written model.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .archs import EMBED, Dims, dims_from_config, gguf_metadata, spec_for
from .errors import UnknownQuant, UnsupportedSource, WriteFailed
from .manifest import FileEntry, Manifest, hash_files, now_iso, sha256_file, tool_versions, write_json_atomic
from .parity import PROMPTS, Parity, compare, gguf_logits, hf_tokenization, tokenize
from .plan import TensorPlan, plan_tensors
from .quantize import check_head_type, kquant_fallbacks, parse_head_type, quantize_kquant, tensor_types, type_counts
from .reference import reference_forward
from .source import read_json
from .staging import Staging
from .vocab import Vocab, load_vocab
from .weights import MergedWeights, open_weights
from .writer import QUANTS, QuantSpec, write_direct

log = logging.getLogger(__name__)


def parse_quants(gguf: str | Sequence[str]) -> list[QuantSpec]:
    """``"f16,q8_0"`` or ``["f16", "q8_0"]`` -> QuantSpecs, in order, without duplicates."""
    names = gguf.split(",") if isinstance(gguf, str) else list(gguf)
    out: list[QuantSpec] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in QUANTS:
            raise UnknownQuant(name, list(QUANTS))
        if QUANTS[name] not in out:
            out.append(QUANTS[name])
    if not out:
        raise UnknownQuant("", list(QUANTS))
    return out


@dataclass
class _Prepared:
    """Everything step 1 validated; nothing written yet."""

    weights: MergedWeights
    dims: Dims
    vocab: Vocab
    plans: list[TensorPlan]
    kv: dict
    thinkling: Path | None


def _prepare(src: Path, lora: Path | None, name: str) -> _Prepared:
    weights = open_weights(src, lora)
    config = weights.model.config
    spec = spec_for(config)
    dims = dims_from_config(config, spec, weights.shape(EMBED)[0])
    if src.is_file():  # a GGUF base: its vocabulary as it is, the adapter's chat template if it has one
        from .gguf_source import GGUFVocab

        template = next((d / "chat_template.jinja" for d in ([lora, lora.parent] if lora else [])
                         if (d / "chat_template.jinja").is_file()), None)
        vocab = GGUFVocab(weights.model, template.read_text(encoding="utf-8").strip() if template else None)
    else:
        vocab = load_vocab(src, dims.n_vocab, config)
    plans = plan_tensors(spec, dims, weights)
    kv = {"general.name": name, "general.type": "model", **gguf_metadata(dims), **vocab.metadata()}
    # the adapter's folder first, then the source's, then their parents (distill writes
    # <run>/thinkling.json beside <run>/base and <run>/adapter)
    dirs = ([lora] if lora else []) + [src] + ([lora.parent] if lora else []) + [src.parent]
    thinkling = next((d / "thinkling.json" for d in dirs if (d / "thinkling.json").is_file()), None)
    return _Prepared(weights, dims, vocab, plans, kv, thinkling)


def default_name(src: Path) -> str:
    """The source folder's name, or its parent's when the folder is generically named."""
    src = src.resolve()
    if src.is_file():
        return src.stem
    return src.parent.name if src.name in ("base", "model", "hf", "merged") else src.name


@dataclass(frozen=True)
class ConvertOptions:
    """What ``convert()`` writes and how it checks it.

    Field names match ``thinkling convert``'s flags (``--gguf``, ``--onnx``,
    ``--check``, ``--name``, ``--threads``); the CLI fills one from its flags.
    """

    # --- what to write
    gguf: str | Sequence[str] = ("f16",)
    """GGUF types, ``"f16,q8_0"`` or a list: f32, f16, bf16, q8_0 written directly;
    q4_k_m, q5_k_m, q6_k by llama.cpp from the F16 file. Empty with ``onnx`` set: ONNX only."""
    onnx: str | Sequence[str] = ()
    """ONNX decoders to write as well (``"fp32,int4"``), each in a folder of its own
    (``convert.onnx``)."""
    name: str | None = None
    """File name stem; ``None``: the source folder's name (``default_name``)."""

    # --- checking and running
    check: bool = False
    """Compare every file's next-token logits on fixed prompts with the numpy reference
    and put the results in the manifest."""
    threads: int | None = None
    """Threads for K-quantization and the parity check; ``None``: up to 4."""
    head_type: str | None = None
    """GGML type of the token embedding / output head in the llama.cpp-quantized outputs
    (``"q4_k"``, ``"q6_k"``, ...; ``convert.quantize.HEAD_TYPES``); ``None``: llama.cpp's
    choice for the mixture."""
    progress: bool = False
    """Show a progress bar for the parity check (the CLI turns it on for a terminal)."""

    def worker_threads(self) -> int:
        return self.threads or min(os.cpu_count() or 1, 4)


def convert(src: str | os.PathLike, out: str | os.PathLike, lora: str | os.PathLike | None = None,
            options: ConvertOptions = ConvertOptions()) -> Manifest:
    """Convert an HF model directory (+ an optional PEFT LoRA adapter) to GGUF files in ``out``.

    Writes ``<name>-<quant>.gguf`` for each of ``options.gguf``,
    ``manifest.json``, and a copy of ``thinkling.json`` if the adapter or
    source has one. With ``options.check``, every file's next-token logits on a
    fixed prompt set are compared with an independent numpy reference and the
    results go into the manifest. ``options.onnx`` ("fp32,int4") also writes
    ONNX decoder folders (``convert.onnx``). Returns the manifest.
    Raises ``ConversionError`` subclasses on bad input; ``out`` then holds no
    partial files.
    """
    src, out = Path(src), Path(out)
    lora_path = Path(lora) if lora is not None else None
    head = parse_head_type(options.head_type)
    onnx_quants = _onnx_quants(options.onnx)
    if src.is_file() and _is_gguf(src) and lora_path is None and not onnx_quants:
        return _from_gguf(src, out, options, head)
    quants = parse_quants(options.gguf) if options.gguf or not onnx_quants else []
    if head is not None and any(q.direct for q in quants):
        raise UnsupportedSource(str(src), "--head-type applies to the outputs llama.cpp quantizes "
                                          f"({', '.join(n for n, q in QUANTS.items() if not q.direct)}); "
                                          "f32/f16/bf16/q8_0 are written directly")
    name = options.name or default_name(src)
    threads = options.worker_threads()
    t0 = time.perf_counter()
    prep = _prepare(src, lora_path, name)  # step 1
    check_head_type(head, prep.dims.hidden, src)
    onnx_opts = _onnx_options(prep, src, name, onnx_quants) if onnx_quants else None  # refuses before writing
    log.info("validated %s%s in %.1fs", src, f" + {lora_path}" if lora_path else "", time.perf_counter() - t0)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Staging(out)
    try:
        files = _write_all(prep, quants, stage, name, threads, options.progress, head) if quants else []  # 2-3
        onnx_entries = []
        if onnx_opts is not None:  # step 2b: ONNX folders, staged beside the GGUF files
            from .onnx.export import folder_of, write_onnx
            onnx_entries = write_onnx(prep.weights, prep.weights.model.config, stage, onnx_opts)
        if options.check:  # step 4: one reference forward for every output
            _check_all(prep, src, stage, files, onnx_entries, threads, options.progress)
        for entry in files:
            entry.sha256 = sha256_file(stage.tmp[entry.path])
            entry.size_bytes = stage.tmp[entry.path].stat().st_size
        keep = [f.path for f in files] + [folder_of(e) for e in onnx_entries]
        stage.commit(keep)  # step 5
    except BaseException:
        stage.discard()
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    onnx_files = []
    if onnx_entries:
        from .onnx.export import file_entries
        onnx_files = file_entries(onnx_entries)
    manifest = _manifest(prep, src, lora_path, name, files + onnx_files)
    if prep.thinkling is not None:
        shutil.copyfile(prep.thinkling, out / "thinkling.json")
    write_json_atomic(out / "manifest.json", manifest.to_dict())
    return manifest


def _onnx_quants(onnx: str | Sequence[str]) -> list[str]:
    if not onnx:
        return []
    from .onnx.export import parse_onnx_quants

    return parse_onnx_quants(onnx)


def _onnx_options(prep: _Prepared, src: Path, name: str, quants: list[str]):
    """``OnnxOptions`` for ``write_onnx``; refuses an unexportable model before anything is written.
    A GGUF source has no tokenizer.json: it is rebuilt from the GGUF's vocabulary."""
    from .onnx.export import OnnxOptions, check_exportable

    check_exportable(prep.weights.model.config, src)
    generated = None
    if src.is_file():
        from .onnx.tokenizer import tokenizer_files

        generated = tokenizer_files(prep.vocab.metadata(), prep.weights.model.config)  # the adapter's template wins
    family = read_json(prep.thinkling, "thinking format").get("family") if prep.thinkling else None
    return OnnxOptions(name=name, quants=quants, src=src, thinkling=prep.thinkling, generated_files=generated,
                       extra_manifest={"name": name, "thinking_family": family})


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _from_gguf(src: Path, out: Path, options: ConvertOptions, head) -> Manifest:
    """A GGUF source without an adapter: requantize it with llama.cpp (``convert.requantize``).
    With an adapter it goes the HF way, dequantized (``convert.gguf_source``)."""
    from .requantize import requantize

    quants = parse_quants(options.gguf)
    threads = options.worker_threads()
    return requantize(src, out, quants, head=head, name=options.name, check=options.check, threads=threads)


def _write_all(prep: _Prepared, quants: list[QuantSpec], stage: Staging, name: str, threads: int,
               progress: bool, head=None) -> list[FileEntry]:
    direct = [q for q in quants if q.direct]
    kquants = [q for q in quants if not q.direct]
    if kquants and QUANTS["f16"] not in direct:
        direct.append(QUANTS["f16"])  # the K-quants' source, not kept
    outputs = [(stage.path(f"{name}-{q.name}.gguf"), q) for q in direct]
    t0 = time.perf_counter()
    try:
        fallbacks = write_direct(outputs, prep.kv, prep.plans, prep.weights, prep.dims, progress)
    except OSError as e:  # ENOSPC, EFBIG, or numpy's short write ("N requested and M written")
        raise WriteFailed(str(stage.out), e.strerror or str(e)) from None
    log.info("wrote %s in %.1fs", ", ".join(q.name for q in direct), time.perf_counter() - t0)
    matrices = {p.gguf for p in prep.plans if p.is_matrix}
    entries = []
    for q in quants:
        final = f"{name}-{q.name}.gguf"
        if not q.direct:
            t0 = time.perf_counter()
            quantize_kquant(stage.tmp[f"{name}-f16.gguf"], stage.path(final), q, threads, head)
            log.info("quantized %s in %.1fs", q.name, time.perf_counter() - t0)
        types = tensor_types(stage.tmp[final])
        fb = fallbacks[q.name] if q.direct else kquant_fallbacks(types, matrices, q)
        if fb:
            log.warning("%s: %d tensors fell back to another type (see the manifest)", final, len(fb))
        entries.append(FileEntry(path=final, quant=q.name, sha256="", size_bytes=0,
                                 tensor_types=type_counts(types), fallbacks=[f.to_dict() for f in fb]))
    return entries


def _check_all(prep: _Prepared, src: Path, stage: Staging, files: list[FileEntry], onnx_entries: list[dict],
               threads: int, progress: bool = False) -> None:
    """Parity of every staged output (GGUF and ONNX) against one reference forward pass.

    The prompts are tokenized by llama.cpp on the first GGUF output, or by the
    onnx backend when only ONNX is written."""
    if files:
        tokens = tokenize(stage.tmp[files[0].path], PROMPTS, threads)
    else:
        from .onnx.export import folder_of
        from .onnx.parity import onnx_tokenize

        first = onnx_entries[0]
        tokens = onnx_tokenize(stage.tmp[folder_of(first)] / Path(first["path"]).name, PROMPTS, threads)
    hf = hf_tokenization(src / "tokenizer.json", PROMPTS) if src.is_dir() else None
    matches = None if hf is None else hf == tokens
    if matches is False:
        log.warning("the HF tokenizer disagrees with the outputs' tokenization on some parity prompts")
    bar = _bar(1 + len(files) + len(onnx_entries), "parity", progress)
    t0 = time.perf_counter()
    ref, ref_hidden = reference_forward(prep.weights, prep.dims, tokens)
    log.info("reference forward pass in %.1fs", time.perf_counter() - t0)
    bar.update(1)
    for entry in files:
        t0 = time.perf_counter()
        result: Parity = compare(gguf_logits(stage.tmp[entry.path], tokens, threads), ref, matches)
        entry.parity = result.to_dict()
        log.info("parity of %s in %.1fs", entry.path, time.perf_counter() - t0)
        bar.update(1)
    if onnx_entries:
        from .onnx.parity import check_staged

        t0 = time.perf_counter()
        check_staged(stage.tmp, onnx_entries, tokens, ref, matches, threads, ref_hidden)
        log.info("parity of %d ONNX decoders in %.1fs", len(onnx_entries), time.perf_counter() - t0)
        bar.update(len(onnx_entries))
    bar.close()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, what: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="step", leave=False)


def _manifest(prep: _Prepared, src: Path, lora: Path | None, name: str, files: list[FileEntry]) -> Manifest:
    model = prep.weights.model
    root = src.parent if src.is_file() else src
    source = {"path": str(src), "files": hash_files(root, model.files()), "lora": None,
              "dtypes": model.dtypes(), "tied_embeddings": prep.weights.tied,
              "format": "gguf" if src.is_file() else "hf"}
    adapter = prep.weights.adapter
    if adapter is not None and lora is not None:
        side = [lora / n for n in ("adapter_config.json", "thinkling.json") if (lora / n).is_file()]
        source["lora"] = {"path": str(lora), "files": hash_files(lora, sorted(side + adapter.weight_files)),
                          **adapter.summary()}
    family = None
    if prep.thinkling is not None:
        family = read_json(prep.thinkling, "thinking format").get("family")
    return Manifest(name=name, architecture=prep.dims.arch, source=source, files=files, thinking_family=family,
                    tools=tool_versions(), created=now_iso())
