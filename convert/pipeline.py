"""``convert()``: HF base (+ PEFT LoRA) -> merged -> GGUF files, manifest, parity report.

The steps, in order:

1. read and validate everything (config, weights headers, adapter, tokenizer,
   tensor plan) before a byte is written, so bad input fails fast and clean;
2. write the direct types (F16, Q8_0, ...) in one pass, to temporary names;
3. derive K-quants from the F16 file with llama.cpp and read their types back;
4. optionally check parity of every file against the numpy reference;
5. hash, rename everything into place, write ``manifest.json`` and copy
   ``thinkling.json``.

Any error before step 5 removes every temporary file, so ``out`` never holds a
half-written model.
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
from .reference import reference_logits
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
    (``convert.onnx_export``)."""
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
    ONNX decoder folders (``convert.onnx_export``). Returns the manifest.
    Raises ``ConversionError`` subclasses on bad input; ``out`` then holds no
    partial files.
    """
    src, out = Path(src), Path(out)
    lora_path = Path(lora) if lora is not None else None
    check, progress = options.check, options.progress
    head = parse_head_type(options.head_type)
    if src.is_file() and _is_gguf(src) and lora_path is None:
        return _from_gguf(src, out, options, head)
    # --- ONNX (issue 8): begin
    from .onnx_export import parse_onnx_quants
    onnx_quants = parse_onnx_quants(options.onnx)
    quants = parse_quants(options.gguf) if options.gguf or not onnx_quants else []
    # --- ONNX: end
    if head is not None and any(q.direct for q in quants):
        raise UnsupportedSource(str(src), "--head-type applies to the outputs llama.cpp quantizes "
                                          f"({', '.join(n for n, q in QUANTS.items() if not q.direct)}); "
                                          "f32/f16/bf16/q8_0 are written directly")
    name = options.name or default_name(src)
    threads = options.worker_threads()
    t0 = time.perf_counter()
    prep = _prepare(src, lora_path, name)  # step 1
    check_head_type(head, prep.dims.hidden, src)
    log.info("validated %s%s in %.1fs", src, f" + {lora_path}" if lora_path else "", time.perf_counter() - t0)
    if onnx_quants and src.is_file():
        raise UnsupportedSource(str(src), "ONNX is exported from the HF model folder, not from a GGUF file")
    if onnx_quants:  # --- ONNX: refuse before writing anything
        from .onnx_export import check_exportable
        check_exportable(prep.weights.model.config, src)

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Staging(out)
    try:
        files = _write_all(prep, quants, stage, name, threads, progress, head) if quants else []  # steps 2-3
        tokens = matches = None
        if check and files:  # step 4
            tokens, matches = _check_all(prep, src, stage, files, threads, progress)
        onnx_files = []
        if onnx_quants:  # --- ONNX: folders of their own, checked on the same prompts and reference
            from .onnx_export import OnnxOptions, OnnxParity, pipeline_step
            onnx_opts = OnnxOptions(name=name, quants=onnx_quants, src=src, thinkling=prep.thinkling)
            parity = OnnxParity(tokens=tokens, hf_matches=matches, threads=threads) if check else None
            onnx_files = pipeline_step(prep.weights, prep.dims, out, onnx_opts, parity)
        for entry in files:
            entry.sha256 = sha256_file(stage.tmp[entry.path])
            entry.size_bytes = stage.tmp[entry.path].stat().st_size
        stage.commit([f.path for f in files])  # step 5
    except BaseException:
        stage.discard()
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    manifest = _manifest(prep, src, lora_path, name, files + onnx_files)
    if prep.thinkling is not None:
        shutil.copyfile(prep.thinkling, out / "thinkling.json")
    write_json_atomic(out / "manifest.json", manifest.to_dict())
    return manifest


def _is_gguf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"GGUF"


def _from_gguf(src: Path, out: Path, options: ConvertOptions, head) -> Manifest:
    """A GGUF source without an adapter: requantize it with llama.cpp (``convert.requantize``).
    With an adapter it goes the HF way, dequantized (``convert.gguf_source``)."""
    from .requantize import requantize

    if options.onnx:
        raise UnsupportedSource(str(src), "ONNX is exported from the HF model folder, not from a GGUF file")
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


def _check_all(prep: _Prepared, src: Path, stage: Staging, files: list[FileEntry], threads: int,
               progress: bool = False) -> tuple[list[list[int]], bool | None]:
    first = stage.tmp[files[0].path]
    tokens = tokenize(first, PROMPTS, threads)
    hf = hf_tokenization(src / "tokenizer.json", PROMPTS)
    matches = None if hf is None else hf == tokens
    if matches is False:
        log.warning("llama.cpp and the HF tokenizer disagree on some parity prompts")
    steps = ["reference"] + [f.path for f in files]
    bar = _bar(len(steps), "parity", progress)
    t0 = time.perf_counter()
    ref = reference_logits(prep.weights, prep.dims, tokens)
    log.info("reference forward pass in %.1fs", time.perf_counter() - t0)
    bar.update(1)
    for entry in files:
        t0 = time.perf_counter()
        result: Parity = compare(gguf_logits(stage.tmp[entry.path], tokens, threads), ref, matches)
        entry.parity = result.to_dict()
        log.info("parity of %s in %.1fs", entry.path, time.perf_counter() - t0)
        bar.update(1)
    bar.close()
    return tokens, matches  # the ONNX step checks on the same tokens


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
