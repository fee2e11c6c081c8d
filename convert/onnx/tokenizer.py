"""``tokenizer.json`` (and its config files) rebuilt from a GGUF vocabulary.

A GGUF source (the embedded Gemma 3, a GGUF student base) carries its
vocabulary as ``tokenizer.ggml.*`` keys, while the ONNX backend and ORT GenAI
tokenize with Hugging Face ``tokenizers`` from ``tokenizer.json``. For a
SentencePiece vocabulary (``tokenizer.ggml.model == "llama"``: llama, Gemma)
the ``tokenizers`` library builds the model; what no library does is derive BPE
*merges* from SentencePiece scores, so that part is written here:

llama.cpp's SentencePiece tokenizer repeatedly joins the adjacent pair whose
concatenation is a vocabulary piece with the highest score. A BPE model whose
merge list holds every pair ``(a, b)`` with ``a + b`` in the vocabulary,
ranked by the score of ``a + b`` (best first), makes the same choices. The
other pieces of the llama.cpp behaviour map onto ``tokenizers`` parts:
spaces become ``▁`` (normalizer), unknown bytes fall back to ``<0xXX>``
pieces (``byte_fallback``), control tokens are special added tokens (plain text
when ``parse_special`` is off), user-defined tokens are matched in the raw text
before the model runs (non-special added tokens).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from ..errors import UnsupportedTokenizer

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
SPACE = "\u2581"


def check_vocab(metadata: Mapping[str, object]) -> None:
    """Refuse, before anything is written, a GGUF vocabulary this module cannot rebuild."""
    kind = metadata.get("tokenizer.ggml.model")
    if kind != "llama":
        raise UnsupportedTokenizer(
            f"the GGUF vocabulary is {kind!r}; ONNX export from a GGUF source rebuilds only "
            "SentencePiece vocabularies ('llama': llama, Gemma)")
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if key not in metadata:
            raise UnsupportedTokenizer(f"the GGUF vocabulary has no {key}")


def spm_merges(pieces: list[str], scores: list[float], types: list[int]) -> list[tuple[str, str]]:
    """Every pair ``(a, b)`` whose concatenation is a piece, best-scored result first.

    Ties (two splits of one piece, or equal scores) go by the result's id, then by
    the left part's length: a stable, reproducible order.
    """
    ids = {p: i for i, p in enumerate(pieces) if types[i] != BYTE}
    found = []
    for piece, i in ids.items():
        if len(piece) < 2:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                found.append((-scores[i], i, cut, left, right))
    found.sort(key=lambda f: f[:3])
    return [(left, right) for _, _, _, left, right in found]


def build_tokenizer(metadata: Mapping[str, object]):
    """A ``tokenizers.Tokenizer`` equivalent to llama.cpp's tokenizer for this GGUF vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors

    check_vocab(metadata)
    pieces = [str(p) for p in metadata["tokenizer.ggml.tokens"]]
    scores = [float(s) for s in metadata["tokenizer.ggml.scores"]]
    types = [int(t) for t in metadata["tokenizer.ggml.token_type"]]
    for i in _end_of_turn_ids(metadata):  # llama.cpp makes end-of-turn pieces control tokens
        types[i] = CONTROL
    unk_id = metadata.get("tokenizer.ggml.unknown_token_id")
    unk = pieces[int(unk_id)] if unk_id is not None else None
    vocab = {}
    for i, p in enumerate(pieces):
        vocab.setdefault(p, i)  # a duplicated piece keeps its first id, as llama.cpp's lookup does
    bpe = models.BPE(vocab=vocab, merges=spm_merges(pieces, scores, types), unk_token=unk,
                     fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(bpe)
    prefix = bool(metadata.get("tokenizer.ggml.add_space_prefix", False))
    norm = [normalizers.Replace(" ", SPACE)]
    dec = [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        norm.insert(0, normalizers.Prepend(SPACE))
        dec.append(decoders.Strip(" ", 1, 0))
    tok.normalizer = normalizers.Sequence(norm)
    tok.decoder = decoders.Sequence(dec)
    tok.add_special_tokens([AddedToken(pieces[i], special=True, normalized=False)
                            for i, t in enumerate(types) if t == CONTROL])
    tok.add_tokens([AddedToken(pieces[i], special=False, normalized=False)
                    for i, t in enumerate(types) if t == USER_DEFINED])
    bos_id = metadata.get("tokenizer.ggml.bos_token_id")
    if metadata.get("tokenizer.ggml.add_bos_token", True) and bos_id is not None:
        bos = pieces[int(bos_id)]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 {bos}:1 $B:1", special_tokens=[(bos, int(bos_id))])
    return tok


def _piece(metadata: Mapping[str, object], key: str) -> str | None:
    i = metadata.get(f"tokenizer.ggml.{key}_token_id")
    return str(metadata["tokenizer.ggml.tokens"][int(i)]) if i is not None else None


def tokenizer_files(metadata: Mapping[str, object], config: Mapping[str, object]) -> dict[str, bytes]:
    """``tokenizer.json``, ``tokenizer_config.json`` and ``generation_config.json`` for a GGUF
    source: the files an HF folder would carry beside its weights (name -> content)."""
    tok = build_tokenizer(metadata)
    cfg = {
        "bos_token": _piece(metadata, "bos"), "eos_token": _piece(metadata, "eos"),
        "unk_token": _piece(metadata, "unknown"), "pad_token": _piece(metadata, "padding"),
        "add_bos_token": bool(metadata.get("tokenizer.ggml.add_bos_token", True)),
        "add_eos_token": bool(metadata.get("tokenizer.ggml.add_eos_token", False)),
        "model_max_length": config.get("max_position_embeddings"),
        "tokenizer_class": "GemmaTokenizer" if config.get("model_type") == "gemma3" else "LlamaTokenizer",
    }
    template = metadata.get("tokenizer.chat_template")
    if template:
        cfg["chat_template"] = str(template)
    gen = {key: int(metadata[f"tokenizer.ggml.{name}_token_id"])
           for key, name in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding"))
           if metadata.get(f"tokenizer.ggml.{name}_token_id") is not None}
    eos = _end_of_turn_ids(metadata)
    if eos and "eos_token_id" in gen:
        gen["eos_token_id"] = [gen["eos_token_id"]] + [i for i in eos if i != gen["eos_token_id"]]
    return {"tokenizer.json": tok.to_str().encode("utf-8"),
            "tokenizer_config.json": (json.dumps({k: v for k, v in cfg.items() if v is not None}, indent=2,
                                                 ensure_ascii=False) + "\n").encode("utf-8"),
            "generation_config.json": (json.dumps(gen, indent=2) + "\n").encode("utf-8")}


def _end_of_turn_ids(metadata: Mapping[str, object]) -> list[int]:
    """End-of-turn ids besides EOS: ``tokenizer.ggml.eot_token_id`` / ``eom_token_id`` if the GGUF
    names them, and pieces llama.cpp treats as end-of-generation by their text whatever their
    type (Gemma's ``<end_of_turn>``)."""
    from thinkling.runtime.backends.onnx_tokenizer import EOG_TEXTS

    ids = [int(metadata[k]) for k in ("tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
           if metadata.get(k) is not None]
    pieces = metadata["tokenizer.ggml.tokens"]
    ids += [i for i, p in enumerate(pieces) if str(p) in EOG_TEXTS and i not in ids]
    return ids
