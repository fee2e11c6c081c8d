"""Write ONNX decoders (fp32, int4) with the files ONNX Runtime GenAI loads beside them.

Each quant gets its own folder, loadable on its own by ``thinkling`` and by
ORT GenAI::

    <out>/<name>-onnx-<quant>/
        <name>-<quant>.onnx        (+ <name>-<quant>.onnx.data past 2 GB)
        genai_config.json          decoder inputs/outputs, heads, eos ids
        tokenizer.json, tokenizer_config.json, ...   copied from the source
        manifest.json              this folder's entry (the runtime reads it)

Steps, in order: validate the config (refuse before touching weights), build
the fp32 graph, quantize MatMuls to ``MatMulNBits`` for int4 (onnxruntime's
own quantizer), save into a temporary folder, hash, rename into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .onnx_spec import DecoderSpec, decoder_spec

log = logging.getLogger(__name__)

ONNX_QUANTS = ("fp32", "int4")
INT4_BLOCK_SIZE = 32
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB; stay clear of it
# Copied from the source folder when present: what a tokenizer and a chat template need.
SIDE_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "generation_config.json", "chat_template.jinja", "chat_template.json")


@dataclass(frozen=True)
class OnnxOptions:
    """What ``export_onnx`` writes: which decoders, under what name, with which side files."""

    # --- what to write
    name: str
    """File name stem: ``<out>/<name>-onnx-<quant>/<name>-<quant>.onnx``."""
    quants: Sequence[str] = ("fp32",)
    """Decoders to write, from ``ONNX_QUANTS`` (fp32, int4); one folder each."""
    attention: str = "auto"
    """``"plain"``, ``"gqa"``, or ``"auto"``: GroupQueryAttention where the
    architecture allows (no qk-norm), the plain-ops lowering otherwise."""

    # --- what goes beside each decoder
    src: str | os.PathLike | None = None
    """The HF folder whose tokenizer and generation files (``SIDE_FILES``) are copied."""
    thinkling: str | os.PathLike | None = None
    """The ``thinkling.json`` (chat format) to copy; ``None``: one beside ``src`` or its parent."""
    extra_manifest: dict | None = None
    """Fields for each folder's ``manifest.json`` besides ``architecture`` and ``files``."""


@dataclass(frozen=True)
class OnnxParity:
    """How ``pipeline_step`` checks parity, so ONNX rows land in the GGUF files' table."""

    tokens: list[list[int]] | None = None
    """The prompt tokens the GGUF files were checked on (from llama.cpp); ``None``:
    the ONNX backend's own tokenization of the parity prompts."""
    hf_matches: bool | None = None
    """Whether ``tokens`` match the HF tokenizer's (recomputed when ``tokens`` is ``None``)."""
    threads: int = 2
    """Threads for the ONNX backend (tokenizing the prompts, computing logits)."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _quantize_int4(model, block_size: int = INT4_BLOCK_SIZE):
    """Weight-only int4 (per block of 32: scale + zero point) of every constant-weight MatMul and the embedding."""
    root = logging.getLogger()
    handlers, root_level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    root.handlers[:], root.level = handlers, root_level  # its import calls logging.basicConfig
    qlog = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = qlog.level
    qlog.setLevel(logging.WARNING)  # it logs every node it visits at INFO
    try:
        # MatMul -> MatMulNBits, and the embedding Gather -> GatherBlockQuantized (4-bit rows),
        # so the vocabulary-sized tables shrink too (llama.cpp's Q4_K_M quantizes token_embd as well).
        q = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=False,
                                 op_types_to_quantize=("MatMul", "Gather"))
        q.process()
    finally:
        qlog.setLevel(level)
    return q.model.model


def _eos_ids(config: dict, src: Path | None) -> list[int]:
    ids: list[int] = []
    gen = {}
    if src is not None and (src / "generation_config.json").is_file():
        gen = json.loads((src / "generation_config.json").read_text())
    for v in (gen.get("eos_token_id"), config.get("eos_token_id")):
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, int) and x not in ids:
                ids.append(x)
    return ids


def genai_config(spec: DecoderSpec, config: dict, filename: str, src: Path | None,
                 context_length: int | None = None) -> dict:
    """The ``genai_config.json`` ORT GenAI reads (field names are GenAI's)."""
    eos = _eos_ids(config, src)
    ctx = context_length or spec.max_positions
    pad = config.get("pad_token_id")
    cfg = {
        "model": {
            "bos_token_id": config.get("bos_token_id"),
            "context_length": ctx,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": filename,
                "head_size": spec.head_dim,
                "hidden_size": spec.hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
                "num_attention_heads": spec.n_heads,
                "num_hidden_layers": spec.n_layers,
                "num_key_value_heads": spec.n_kv_heads,
            },
            "eos_token_id": eos[0] if len(eos) == 1 else eos,
            "pad_token_id": pad if pad is not None else (eos[0] if eos else 0),
            "type": spec.model_type,
            "vocab_size": spec.vocab,
        },
        "search": {
            "diversity_penalty": 0.0, "do_sample": False, "early_stopping": True,
            "length_penalty": 1.0, "max_length": ctx, "min_length": 0,
            "no_repeat_ngram_size": 0, "num_beams": 1, "num_return_sequences": 1,
            "past_present_share_buffer": False, "repetition_penalty": 1.0,
            "temperature": 1.0, "top_k": 1, "top_p": 1.0,
        },
    }
    if cfg["model"]["bos_token_id"] is None:  # GenAI wants a number or no key (qwen2 has no BOS)
        del cfg["model"]["bos_token_id"]
    return cfg


def _save_model(model, path: Path) -> Path | None:
    """Save ``model``; weights go to ``<file>.data`` when they would pass 2 GB."""
    import onnx

    nbytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if nbytes < EXTERNAL_DATA_BYTES:
        onnx.save_model(model, str(path))
        return None
    data = path.with_name(path.name + ".data")
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    data.chmod(0o644)  # onnx creates it owner-only; the .onnx beside it is world-readable
    return data


def _carry_thinking_format(src: Path | None, folder: Path, given: Path | None = None) -> None:
    """Copy ``thinkling.json`` (the chat format) into the folder: the one the
    caller found, else one beside the source or its parent."""
    cands = [given] if given is not None else []
    if src is not None:
        cands += [src / "thinkling.json", src.parent / "thinkling.json"]
    for cand in cands:
        if cand.is_file():
            shutil.copy2(cand, folder / "thinkling.json")
            return


def _write_folder(model, quant: str, spec: DecoderSpec, config: dict, out: Path,
                  opts: OnnxOptions) -> tuple[dict, Path]:
    """Write one quant's folder under a temporary name; return (entry, temp folder).

    ``opts`` is ``export_onnx``'s, resolved: ``src`` and ``thinkling`` are
    ``Path``s or ``None``, ``attention`` is the lowering used, and
    ``extra_manifest`` is a dict.
    """
    name, src, attention = opts.name, opts.src, opts.attention
    folder_name = f"{name}-onnx-{quant}"
    tmp = out / f".{folder_name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    fname = f"{name}-{quant}.onnx"
    data = _save_model(model, tmp / fname)
    for side in SIDE_FILES:
        if src is not None and (src / side).is_file():
            shutil.copy2(src / side, tmp / side)
    _carry_thinking_format(src, tmp, opts.thinkling)
    (tmp / "genai_config.json").write_text(
        json.dumps(genai_config(spec, config, fname, src), indent=2) + "\n")
    size = (tmp / fname).stat().st_size + (data.stat().st_size if data else 0)
    entry = {"path": f"{folder_name}/{fname}", "format": "onnx", "quant": quant,
             "sha256": _sha256(tmp / fname), "size_bytes": size, "attention": attention}
    if data is not None:
        entry["external_data"] = {"path": f"{folder_name}/{data.name}", "sha256": _sha256(data),
                                  "size_bytes": data.stat().st_size}
    local = dict(opts.extra_manifest, files=[dict(entry, path=fname)])
    if not local.get("thinking_family") and (tmp / "thinkling.json").is_file():
        local["thinking_family"] = json.loads((tmp / "thinkling.json").read_text()).get("family")
    (tmp / "manifest.json").write_text(json.dumps(local, indent=2) + "\n")
    return entry, tmp


def parse_onnx_quants(text: str | Sequence[str] | None) -> list[str]:
    """``"fp32,int4"`` -> ``["fp32", "int4"]``; unknown names are an error."""
    if not text:
        return []
    items = [s.strip().lower() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    bad = [s for s in items if s not in ONNX_QUANTS]
    if bad:
        raise ValueError(f"unknown ONNX quant {', '.join(bad)} (choose from {', '.join(ONNX_QUANTS)})")
    return list(dict.fromkeys(items))


def check_exportable(config: dict, src: Path | None = None) -> DecoderSpec:
    """Refuse, before any weight is read, what the ONNX exporter cannot write."""
    spec = decoder_spec(config)
    if src is not None and not (src / "tokenizer.json").is_file():
        from .errors import UnsupportedTokenizer

        raise UnsupportedTokenizer(
            f"{src} has no tokenizer.json; the ONNX backend tokenizes with the `tokenizers` library")
    return spec


def export_onnx(tensors: Mapping[str, np.ndarray], config: dict, out: str | os.PathLike,
                options: OnnxOptions) -> list[dict]:
    """Write one ONNX folder per quant in ``options.quants`` and return their manifest entries.

    ``tensors`` are the (merged) HF-named weights, ``config`` the HF
    ``config.json`` dict; ``options`` says what to write (``OnnxOptions``).
    """
    from .onnx_graph import build_decoder

    src_p = Path(options.src) if options.src is not None else None
    spec = check_exportable(config, src_p)
    attention = options.attention
    if attention == "auto":
        attention = "plain" if spec.qk_norm else "gqa"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extra = dict(options.extra_manifest or {}, architecture=spec.model_type)
    opts = replace(options, src=src_p, attention=attention, extra_manifest=extra,
                   thinkling=Path(options.thinkling) if options.thinkling else None)
    staged: list[tuple[dict, Path]] = []
    try:
        fp32 = build_decoder(spec, tensors, attention=attention)
        # fp32 last: saving with external data moves its tensors out of the in-memory proto,
        # and int4 is quantized from a copy of that proto.
        for quant in sorted(parse_onnx_quants(list(options.quants)), key=lambda q: q == "fp32"):
            log.info("writing ONNX %s (%s attention)", quant, attention)
            model = fp32 if quant == "fp32" else _quantize_int4(_clone(fp32))
            staged.append(_write_folder(model, quant, spec, config, out, opts))
            del model
        staged.sort(key=lambda st: ONNX_QUANTS.index(st[0]["quant"]))
        for entry, tmp in staged:  # every folder written: move them all into place
            final = out / Path(entry["path"]).parent
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    finally:
        for _, tmp in staged:
            shutil.rmtree(tmp, ignore_errors=True)
    return [entry for entry, _ in staged]


def _clone(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def _rewrite_folder_manifest(out: Path, entry: dict) -> None:
    """Put the parity result into the per-folder manifest the runtime reads."""
    mpath = out / Path(entry["path"]).parent / "manifest.json"
    local = json.loads(mpath.read_text())
    local["files"][0]["parity"] = entry.get("parity")
    tmp = mpath.with_name(".manifest.json.tmp")
    tmp.write_text(json.dumps(local, indent=2) + "\n")
    os.replace(tmp, mpath)


def pipeline_step(weights, dims, out: Path, options: OnnxOptions, parity: OnnxParity | None = None) -> list:
    """``convert()``'s ONNX step: export, optionally check parity, return manifest ``FileEntry``s.

    ``options.src`` is the source folder (required here) and ``options.thinkling``
    the chat format ``convert()`` found; each folder's manifest gets the name and that
    format's family. With ``parity``, the same prompt tokens as the GGUF files
    (``parity.tokens``, from llama.cpp) go through each ONNX file and the numpy
    reference, so ONNX rows land in the same parity table. Without GGUF
    outputs, the ONNX backend's own tokenization of the parity prompts is used.
    """
    from .manifest import FileEntry
    from .onnx_parity import onnx_logits
    from .parity import PROMPTS, compare, hf_tokenization
    from .reference import reference_logits

    thinkling = options.thinkling
    family = json.loads(Path(thinkling).read_text()).get("family") if thinkling else None
    extra = dict(options.extra_manifest or {}, name=options.name, thinking_family=family)
    entries = export_onnx(weights, weights.model.config, out, replace(options, extra_manifest=extra))
    if parity is not None and entries:
        tokens, hf_matches, threads = parity.tokens, parity.hf_matches, parity.threads
        if tokens is None:
            from runtime.backends import BackendOptions, open_backend

            b = open_backend("onnx", str(out / entries[0]["path"]), BackendOptions(n_ctx=512, n_threads=threads))
            try:
                tokens = [b.tokenize(p, add_special=True) for p in PROMPTS]
            finally:
                b.close()
            hf = hf_tokenization(Path(options.src) / "tokenizer.json", PROMPTS)
            hf_matches = None if hf is None else hf == tokens
        ref = reference_logits(weights, dims, tokens)
        for e in entries:
            e["parity"] = compare(onnx_logits(out / e["path"], tokens, threads), ref, hf_matches).to_dict()
            _rewrite_folder_manifest(out, e)
    return [FileEntry(path=e["path"], quant=e["quant"], sha256=e["sha256"], size_bytes=e["size_bytes"],
                      format="onnx", parity=e.get("parity")) for e in entries]
