"""Tokenization for the ONNX backend with the ``tokenizers`` library, made to
behave like llama.cpp's: ``add_special`` adds BOS/EOS as the model's tokenizer
config says, ``parse_special=False`` treats special-token text as plain text,
and ``token_bytes`` returns a token's raw bytes (byte-level BPE symbols mapped
back through GPT-2's byte table, SentencePiece ``▁``/``<0xXX>`` pieces
decoded), so the runtime's incremental UTF-8 decoding works the same for both
backends.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

# Texts llama.cpp also treats as end-of-generation when the vocab has them as special tokens.
EOG_TEXTS = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|endoftext|>",
             "<end_of_turn>", "<|end|>", "</s>", "<|return|>")
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _byte_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode, inverted: printable stand-in character -> byte."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[chr(b)] = b
        else:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def _token_text(value) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class HFTokenizer:
    """``tokenizer.json`` + ``tokenizer_config.json`` from one folder."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        cfg_path = folder / "tokenizer_config.json"
        self.config: dict = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
        # the decoder and pre-tokenizer as JSON, not the whole file (Gemma's is 14 MB of merges)
        raw = {part: json.loads(obj.__getstate__()) for part, obj in
               (("decoder", self.tok.decoder), ("pre_tokenizer", self.tok.pre_tokenizer)) if obj is not None}
        self.byte_level = self._is_byte_level(raw)
        self._bytes = _byte_decoder() if self.byte_level else {}
        self.added = {i: t.content for i, t in self.tok.get_added_tokens_decoder().items()}
        self.special = {i for i, t in self.tok.get_added_tokens_decoder().items() if t.special}
        self.bos_text = _token_text(self.config.get("bos_token"))
        self.eos_text = _token_text(self.config.get("eos_token"))
        self.bos_id = self.tok.token_to_id(self.bos_text) if self.bos_text else None
        self.eos_id = self.tok.token_to_id(self.eos_text) if self.eos_text else None
        self.chat_template = self._chat_template(folder)
        self._probe_post_processor()

    @staticmethod
    def _is_byte_level(raw: dict) -> bool:
        def has(node, kind):
            if not isinstance(node, dict):
                return False
            if node.get("type") == kind:
                return True
            return any(has(n, kind) for n in node.get("decoders", []) + node.get("pretokenizers", []))
        return has(raw.get("decoder"), "ByteLevel") or has(raw.get("pre_tokenizer"), "ByteLevel")

    def _chat_template(self, folder: Path) -> str | None:
        tpl = self.config.get("chat_template")
        if isinstance(tpl, list):  # [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in tpl if isinstance(t, dict)}
            tpl = named.get("default") or next(iter(named.values()), None)
        if not tpl and (folder / "chat_template.jinja").is_file():
            tpl = (folder / "chat_template.jinja").read_text()
        if not tpl and (folder / "chat_template.json").is_file():
            tpl = json.loads((folder / "chat_template.json").read_text()).get("chat_template")
        return tpl or None

    def _probe_post_processor(self) -> None:
        # What does the tokenizer.json post-processor add by itself? The config's
        # add_bos_token/add_eos_token win where it says more (as transformers does).
        probe = self.tok.encode("a", add_special_tokens=False).ids
        full = self.tok.encode("a", add_special_tokens=True).ids
        self._pp_adds = full != probe
        want_bos = self.config.get("add_bos_token")
        want_eos = self.config.get("add_eos_token")
        self._extra_bos = bool(want_bos) and self.bos_id is not None and full[:1] != [self.bos_id]
        self._extra_eos = bool(want_eos) and self.eos_id is not None and full[-1:] != [self.eos_id]
        self._strip_bos = want_bos is False and self.bos_id is not None and full[:1] == [self.bos_id] \
            and probe[:1] != [self.bos_id]

    def encode(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        self.tok.encode_special_tokens = not parse_special
        try:
            ids = self.tok.encode(text, add_special_tokens=add_special and self._pp_adds).ids
        finally:
            self.tok.encode_special_tokens = False
        if add_special:
            if self._strip_bos and ids[:1] == [self.bos_id]:
                ids = ids[1:]
            if self._extra_bos:
                ids = [self.bos_id] + ids
            if self._extra_eos:
                ids = ids + [self.eos_id]
        return ids

    def token_bytes(self, token_id: int) -> bytes:
        if token_id in self.added:
            return self.added[token_id].encode("utf-8")
        piece = self.tok.id_to_token(token_id)
        if piece is None:
            return b""
        if self.byte_level:
            try:
                return bytes(self._bytes[c] for c in piece)
            except KeyError:  # not a byte-level symbol string: fall back to its text
                return piece.encode("utf-8")
        m = _BYTE_PIECE.match(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace("\u2581", " ").encode("utf-8")

    def eog_ids(self, extra: list[int]) -> set[int]:
        ids = {i for i in extra if isinstance(i, int)}
        if self.eos_id is not None:
            ids.add(self.eos_id)
        ids |= {i for i in self.special if self.added.get(i) in EOG_TEXTS}
        return ids
