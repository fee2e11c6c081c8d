"""Write ONNX decoders (fp32, int4) with the files ONNX Runtime GenAI loads beside them.

Each quant gets its own folder, loadable on its own by ``thinkling`` and by
ORT GenAI::

    <out>/<name>-onnx-<quant>/
        <name>-<quant>.onnx        (+ <name>-<quant>.onnx.data past 2 GB)
        genai_config.json          decoder inputs/outputs, heads, eos ids
        tokenizer.json, tokenizer_config.json, ...   copied from the source
                                   (rebuilt from the vocabulary for a GGUF source)
        manifest.json              this folder's entry (the runtime reads it)

Steps, in order: validate the config (refuse before touching weights), build
the fp32 graph, quantize MatMuls to ``MatMulNBits`` for int4 (onnxruntime's
own quantizer), save into a staged temporary folder and hash. ``convert()``
renames the folders into place with the GGUF files, after every check
(``convert.staging``); ``export_onnx`` is the same without the converter.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from thinkling.runtime.models import onnx_model_file

from ..manifest import sha256_file
from ..staging import Staging
from .spec import DecoderSpec, decoder_spec

log = logging.getLogger(__name__)

ONNX_QUANTS = ("fp32", "int4")
INT4_BLOCK_SIZE = 32
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf's hard limit is 2 GiB; stay clear of it
# ORT GenAI's name where it differs from ours (it reads "gemma3" as the multimodal model)
GENAI_TYPES = {"gemma3": "gemma3_text"}
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
    """The source: an HF folder (its tokenizer and generation files, ``SIDE_FILES``, are
    copied) or a GGUF file (then ``generated_files`` carries them)."""
    thinkling: str | os.PathLike | None = None
    """The ``thinkling.json`` (chat format) to copy; ``None``: one beside ``src`` or its parent."""
    extra_manifest: dict | None = None
    """Fields for each folder's ``manifest.json`` besides ``architecture`` and ``files``."""
    generated_files: Mapping[str, bytes] | None = None
    """Files to write beside each decoder that the source lacks (name -> content): for a
    GGUF source, the tokenizer rebuilt from its vocabulary (``convert.onnx.tokenizer``)."""


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


def _eos_ids(config: dict, side: Mapping[str, bytes]) -> list[int]:
    ids: list[int] = []
    gen = json.loads(side["generation_config.json"]) if "generation_config.json" in side else {}
    for v in (gen.get("eos_token_id"), config.get("eos_token_id")):
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, int) and x not in ids:
                ids.append(x)
    return ids


def genai_config(spec: DecoderSpec, config: dict, filename: str, side: Mapping[str, bytes],
                 context_length: int | None = None) -> dict:
    """The ``genai_config.json`` ORT GenAI reads (field names are GenAI's); ``side`` holds
    the tokenizer and generation files going beside the model (name -> bytes)."""
    eos = _eos_ids(config, side)
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
            "type": GENAI_TYPES.get(spec.model_type, spec.model_type),
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


def side_files(src: Path | None, thinkling: Path | None = None,
               generated: Mapping[str, bytes] | None = None) -> dict[str, bytes]:
    """What goes beside every decoder: the source folder's tokenizer and generation files
    (``SIDE_FILES``), files generated for a GGUF source (``generated``), and the chat
    format ``thinkling.json`` (the one given, else one beside ``src`` or its parent)."""
    side: dict[str, bytes] = dict(generated or {})
    folder = src if src is not None and src.is_dir() else None
    for name in SIDE_FILES:
        if folder is not None and (folder / name).is_file():
            side[name] = (folder / name).read_bytes()
    cands = [thinkling] if thinkling is not None else []
    if src is not None:
        cands += [src / "thinkling.json", src.parent / "thinkling.json"]
    for cand in cands:
        if cand.is_file():
            side["thinkling.json"] = cand.read_bytes()
            break
    return side


def _write_folder(model, quant: str, spec: DecoderSpec, config: dict, stage: Staging,
                  opts: OnnxOptions, side: Mapping[str, bytes]) -> dict:
    """Write one quant's folder into ``stage`` (a temporary name until ``stage.commit``);
    return its manifest entry (``path`` relative to ``stage.out``).

    ``opts`` is ``write_onnx``'s, resolved: ``attention`` is the lowering used
    and ``extra_manifest`` a dict.
    """
    layout = onnx_model_file(Path(), opts.name, quant)  # <name>-onnx-<quant>/<name>-<quant>.onnx
    folder_name, fname = layout.parent.name, layout.name
    tmp = stage.folder(folder_name)
    data = _save_model(model, tmp / fname)
    for name, content in side.items():
        (tmp / name).write_bytes(content)
    (tmp / "genai_config.json").write_text(
        json.dumps(genai_config(spec, config, fname, side), indent=2) + "\n")
    size = (tmp / fname).stat().st_size + (data.stat().st_size if data else 0)
    entry = {"path": f"{folder_name}/{fname}", "format": "onnx", "quant": quant,
             "sha256": sha256_file(tmp / fname), "size_bytes": size, "attention": opts.attention}
    if data is not None:
        entry["external_data"] = {"path": f"{folder_name}/{data.name}", "sha256": sha256_file(data),
                                  "size_bytes": data.stat().st_size}
    local = dict(opts.extra_manifest, files=[dict(entry, path=fname)])
    if not local.get("thinking_family") and "thinkling.json" in side:
        local["thinking_family"] = json.loads(side["thinkling.json"]).get("family")
    (tmp / "manifest.json").write_text(json.dumps(local, indent=2) + "\n")
    return entry


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
    """Refuse, before any weight is read, what the ONNX exporter cannot write.

    ``src`` is an HF folder (it must hold ``tokenizer.json``) or a GGUF file
    (its vocabulary must be one ``convert.onnx.tokenizer`` can rebuild).
    """
    spec = decoder_spec(config)
    if src is not None and src.is_dir() and not (src / "tokenizer.json").is_file():
        from ..errors import UnsupportedTokenizer

        raise UnsupportedTokenizer(
            f"{src} has no tokenizer.json; the ONNX backend tokenizes with the `tokenizers` library")
    return spec


def write_onnx(tensors: Mapping[str, np.ndarray], config: dict, stage: Staging,
               options: OnnxOptions) -> list[dict]:
    """Write one folder per quant in ``options.quants`` into ``stage`` (temporary names)
    and return their manifest entries, fp32 first. Nothing is in place until the
    caller's ``stage.commit``: ``convert()`` commits ONNX and GGUF outputs together,
    after every check.

    ``tensors`` are the (merged) HF-named weights, ``config`` the HF
    ``config.json`` dict; ``options`` says what to write (``OnnxOptions``).
    """
    from .graph import build_decoder

    src = Path(options.src) if options.src is not None else None
    spec = check_exportable(config, src)
    attention = options.attention
    if attention == "auto":
        attention = "plain" if spec.qk_norm else "gqa"
    extra = dict(options.extra_manifest or {}, architecture=spec.model_type)
    opts = replace(options, attention=attention, extra_manifest=extra)
    side = side_files(src, Path(options.thinkling) if options.thinkling else None, options.generated_files)
    entries = []
    quants = parse_onnx_quants(list(options.quants))
    fp32 = build_decoder(spec, tensors, attention=attention)
    # fp32 last: saving with external data moves its tensors out of the in-memory proto,
    # and int4 is quantized from a copy of that proto (from the proto itself when fp32 is
    # not written: one fp32 graph less in memory, 1.7 GB for Gemma 3 270M).
    for quant in sorted(quants, key=lambda q: q == "fp32"):
        log.info("writing ONNX %s (%s attention)", quant, attention)
        if quant == "fp32":
            model = fp32
        else:
            model = _quantize_int4(_clone(fp32) if "fp32" in quants else fp32)
        entries.append(_write_folder(model, quant, spec, config, stage, opts, side))
        del model
    return sorted(entries, key=lambda e: ONNX_QUANTS.index(e["quant"]))


def export_onnx(tensors: Mapping[str, np.ndarray], config: dict, out: str | os.PathLike,
                options: OnnxOptions) -> list[dict]:
    """``write_onnx`` on its own: write the folders into ``out`` and rename them into place.

    Nothing is left in ``out`` when it fails (an unsupported config is refused
    before ``out`` is created).
    """
    check_exportable(config, Path(options.src) if options.src is not None else None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Staging(out)
    try:
        entries = write_onnx(tensors, config, stage, options)
        stage.commit([str(Path(e["path"]).parent) for e in entries])
    except BaseException:
        stage.discard()
        raise
    return entries


def _clone(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def folder_of(entry: dict) -> str:
    """The folder an ONNX manifest entry lives in (its staging key)."""
    return str(Path(entry["path"]).parent)


def file_entries(entries: Sequence[dict]) -> list:
    """ONNX entries as the converter's manifest ``FileEntry``s."""
    from ..manifest import FileEntry

    return [FileEntry(path=e["path"], quant=e["quant"], sha256=e["sha256"], size_bytes=e["size_bytes"],
                      format="onnx", parity=e.get("parity")) for e in entries]
