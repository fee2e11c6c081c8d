"""Tokenizer -> GGUF vocabulary: tokens, token types, scores or merges, special ids, chat template.

Two families:
- byte-level BPE (``tokenizer.json``, GPT-2 style): ``tokenizer.ggml.model = "gpt2"``
  plus ``tokenizer.ggml.pre`` naming the pre-tokenizer regex llama.cpp must use;
- SentencePiece BPE (``tokenizer.model``, Llama/Gemma style): ``"llama"`` with scores.

The pre-tokenizer is identified by its regex (a table below), not by model
name, so a renamed fine-tune of a known family still converts, and an unknown
regex is an error rather than a silently different tokenization.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import ConversionError, UnsupportedTokenizer
from .source import read_json
from .spm import MODEL_BPE, read_model

# GGUF token types (the same numbering as SentencePiece piece types)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")

# pre-tokenizer regex -> llama.cpp's tokenizer.ggml.pre
PRE_TOKENIZERS = {
    GPT2_REGEX: "gpt-2",
    QWEN2_REGEX: "qwen2",  # Qwen2/2.5/3 and DeepSeek-R1-Distill-Qwen
    LLAMA3_REGEX: "llama-bpe",
}
_OK_NORMALIZERS = (None, "NFC")
log = logging.getLogger(__name__)


@dataclass
class Vocab:
    model: str  # "gpt2" | "llama"
    tokens: list[str]
    types: list[int]
    pre: str | None = None
    scores: list[float] | None = None
    merges: list[str] | None = None
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = False
    add_eos: bool = False
    add_space_prefix: bool | None = None
    chat_template: str | None = None
    n_real: int = 0  # tokens the tokenizer defines; the rest pad up to the embedding size

    def metadata(self) -> dict[str, object]:
        kv: dict[str, object] = {"tokenizer.ggml.model": self.model}
        if self.pre:
            kv["tokenizer.ggml.pre"] = self.pre
        kv["tokenizer.ggml.tokens"] = self.tokens
        kv["tokenizer.ggml.token_type"] = self.types
        if self.scores is not None:
            kv["tokenizer.ggml.scores"] = self.scores
        if self.merges:
            kv["tokenizer.ggml.merges"] = self.merges
        for key, value in (("bos_token_id", self.bos_id), ("eos_token_id", self.eos_id),
                           ("unknown_token_id", self.unk_id), ("padding_token_id", self.pad_id)):
            if value is not None:
                kv[f"tokenizer.ggml.{key}"] = value
        kv["tokenizer.ggml.add_bos_token"] = self.add_bos
        kv["tokenizer.ggml.add_eos_token"] = self.add_eos
        if self.add_space_prefix is not None:
            kv["tokenizer.ggml.add_space_prefix"] = self.add_space_prefix
        if self.chat_template:
            kv["tokenizer.chat_template"] = self.chat_template
        return kv


def load_vocab(model_dir: Path, n_vocab: int, config: dict) -> Vocab:
    """Build the GGUF vocabulary of ``model_dir`` padded to ``n_vocab`` (the embedding rows)."""
    tok_cfg = read_json(model_dir / "tokenizer_config.json", "") if (model_dir / "tokenizer_config.json").is_file() \
        else {}
    tj = read_json(model_dir / "tokenizer.json", "") if (model_dir / "tokenizer.json").is_file() else None
    if (model_dir / "tokenizer.model").is_file():
        vocab = _spm_vocab(model_dir / "tokenizer.model", tj, tok_cfg, n_vocab)
    elif tj is not None:
        vocab = _bpe_vocab(tj, n_vocab)
    else:
        from .errors import MissingFile
        raise MissingFile(str(model_dir / "tokenizer.json"), "tokenizer (tokenizer.json or tokenizer.model)")
    _special_ids(vocab, tok_cfg, config, model_dir)
    _add_flags(vocab, tj, tok_cfg)
    vocab.chat_template = _chat_template(model_dir, tok_cfg)
    return vocab


def _padded(n_real: int, n_vocab: int, where: str) -> tuple[list[str], list[int]]:
    if n_real > n_vocab:
        raise ConversionError(f"{where} defines {n_real} tokens but the embedding has only {n_vocab} rows")
    return [f"[PAD{i}]" for i in range(n_vocab)], [UNUSED] * n_vocab


def _bpe_vocab(tj: dict, n_vocab: int) -> Vocab:
    model = tj.get("model") or {}
    if model.get("type") != "BPE":
        raise UnsupportedTokenizer(f"tokenizer.json model type {model.get('type')!r} (only BPE)")
    if model.get("byte_fallback"):
        raise UnsupportedTokenizer("SentencePiece-style BPE in tokenizer.json needs its tokenizer.model")
    norm = (tj.get("normalizer") or {}).get("type")
    if norm not in _OK_NORMALIZERS:
        raise UnsupportedTokenizer(f"normalizer {norm!r}")
    pre = PRE_TOKENIZERS.get(_pre_regex(tj.get("pre_tokenizer")))
    if pre is None:
        raise UnsupportedTokenizer(f"unknown pre-tokenizer {json.dumps(tj.get('pre_tokenizer'))[:200]}")
    added = tj.get("added_tokens") or []
    ids = list(model["vocab"].values()) + [t["id"] for t in added]
    n_real = max(ids) + 1
    tokens, types = _padded(n_real, n_vocab, "tokenizer.json")
    for text, i in model["vocab"].items():
        tokens[i], types[i] = text, NORMAL
    for t in added:
        tokens[t["id"]], types[t["id"]] = t["content"], CONTROL if t.get("special") else USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if not merges:
        raise UnsupportedTokenizer("byte-level BPE without merges (llama.cpp needs at least one)")
    return Vocab(model="gpt2", pre=pre, tokens=tokens, types=types, merges=merges, n_real=n_real)


def _pre_regex(pre: dict | None) -> str | None:
    """The split regex a byte-level pre-tokenizer applies, or None if it is not one we know."""
    if not pre:
        return None
    if pre.get("type") == "ByteLevel":
        if pre.get("add_prefix_space"):
            raise UnsupportedTokenizer("ByteLevel add_prefix_space=true")
        return GPT2_REGEX if pre.get("use_regex", True) else None
    if pre.get("type") == "Sequence":
        steps = pre.get("pretokenizers") or []
        if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[1].get("type") == "ByteLevel"
                and not steps[1].get("use_regex", True) and not steps[1].get("add_prefix_space")
                and steps[0].get("behavior") == "Isolated" and not steps[0].get("invert")):
            return (steps[0].get("pattern") or {}).get("Regex")
    return None


def _spm_vocab(path: Path, tj: dict | None, tok_cfg: dict, n_vocab: int) -> Vocab:
    sp = read_model(path)
    if sp.model_type != MODEL_BPE:
        raise UnsupportedTokenizer("SentencePiece unigram models (only SentencePiece BPE, as in Llama and Gemma)")
    tokens, types = _padded(len(sp.pieces), n_vocab, str(path))
    scores = [0.0] * n_vocab
    tokens[:len(sp.pieces)] = sp.pieces
    types[:len(sp.pieces)] = sp.types
    scores[:len(sp.pieces)] = sp.scores
    n_real = len(sp.pieces)
    # tokens added on top of the SentencePiece model (tokenizer.json or tokenizer_config.json)
    added = {t["id"]: t for t in (tj or {}).get("added_tokens") or []}
    for i, t in (tok_cfg.get("added_tokens_decoder") or {}).items():
        added.setdefault(int(i), {"id": int(i), **t})
    for i, t in sorted(added.items()):
        if i >= n_vocab:
            raise ConversionError(f"added token {t['content']!r} has id {i} beyond the embedding ({n_vocab} rows)")
        if i >= len(sp.pieces) or types[i] in (NORMAL, USER_DEFINED, CONTROL):
            tokens[i] = t["content"]
            types[i] = CONTROL if t.get("special") else USER_DEFINED
            n_real = max(n_real, i + 1)
    pre = (tj or {}).get("pre_tokenizer") or {}
    if sp.add_dummy_prefix and pre.get("type") == "Metaspace" and pre.get("prepend_scheme") == "first":
        # transformers' non-legacy Llama tokenizer: no space prefix on text right after a special
        # token; SentencePiece and llama.cpp add one there. Plain text tokenizes the same.
        log.warning("tokenizer.json (prepend_scheme=first) and llama.cpp differ on text directly after "
                    "a special token, e.g. '<s>[INST]'")
    vocab = Vocab(model="llama", tokens=tokens, types=types, scores=scores, n_real=n_real,
                  add_space_prefix=sp.add_dummy_prefix)
    vocab.bos_id = sp.bos_id if sp.bos_id >= 0 else None
    vocab.eos_id = sp.eos_id if sp.eos_id >= 0 else None
    vocab.unk_id = sp.unk_id if sp.unk_id >= 0 else None
    vocab.pad_id = sp.pad_id if sp.pad_id >= 0 else None
    return vocab


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _special_ids(vocab: Vocab, tok_cfg: dict, config: dict, model_dir: Path) -> None:
    """BOS/EOS/UNK/PAD: the tokenizer config's token strings first, then config ids."""
    index = {t: i for i, t in enumerate(vocab.tokens[:vocab.n_real])}
    gen_path = model_dir / "generation_config.json"
    gen = read_json(gen_path, "") if gen_path.is_file() else {}
    for attr, key in (("bos_id", "bos"), ("eos_id", "eos"), ("unk_id", "unk"), ("pad_id", "pad")):
        text = _token_text(tok_cfg.get(f"{key}_token"))
        if text is not None and text in index:
            setattr(vocab, attr, index[text])
            continue
        if getattr(vocab, attr) is not None:
            continue
        for source in (config, gen):
            value = source.get(f"{key}_token_id")
            if isinstance(value, list):
                value = value[0] if value else None
            if isinstance(value, int) and 0 <= value < len(vocab.tokens):
                setattr(vocab, attr, value)
                break


def _add_flags(vocab: Vocab, tj: dict | None, tok_cfg: dict) -> None:
    """add_bos/add_eos as the HF tokenizer applies them: its post-processor template if it has
    one, else tokenizer_config.json's flags, else the family default (SentencePiece adds BOS)."""
    template = _template_processing((tj or {}).get("post_processor"))
    if template is not None:
        single = template.get("single") or []
        vocab.add_bos = bool(single) and "SpecialToken" in single[0]
        vocab.add_eos = len(single) > 1 and "SpecialToken" in single[-1]
        return
    default_bos = vocab.model == "llama"
    vocab.add_bos = bool(tok_cfg.get("add_bos_token", default_bos))
    vocab.add_eos = bool(tok_cfg.get("add_eos_token", False))


def _template_processing(post: dict | None) -> dict | None:
    if not post:
        return None
    if post.get("type") == "TemplateProcessing":
        return post
    if post.get("type") == "Sequence":
        for p in post.get("processors") or []:
            found = _template_processing(p)
            if found is not None:
                return found
    return None


def _chat_template(model_dir: Path, tok_cfg: dict) -> str | None:
    """chat_template.jinja (transformers >= 4.43 writes it), else tokenizer_config.json's
    ``chat_template`` (a string or a list of named templates: the one named "default")."""
    path = model_dir / "chat_template.jinja"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    value = tok_cfg.get("chat_template")
    if value is None and (model_dir / "chat_template.json").is_file():
        value = read_json(model_dir / "chat_template.json", "").get("chat_template")
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        value = named.get("default") or next(iter(named.values()), None)
    return value if isinstance(value, str) and value else None
