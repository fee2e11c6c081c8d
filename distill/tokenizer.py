"""The student's tokenizer: GPT-2 style byte-level BPE, built with HF ``tokenizers``.

Chosen so that the HF-to-GGUF conversion and llama.cpp's BPE loader accept it:
the 256 byte-level symbols are in the vocab, there is a small non-empty merge
list (llama.cpp needs merges to exist), the pre-tokenizer is the GPT-2 regex.
No digit merges on purpose: every digit is its own token, which small models
learn arithmetic on far more easily.

Needs ``tokenizers`` (not torch).
"""

from __future__ import annotations

import json
from pathlib import Path

from thinkling.distill.chat import BOS, CHAT_TEMPLATE, EOS, PAD, SPECIAL_TOKENS

# " +" etc. are single pre-tokens under the GPT-2 regex; merging them shortens steps.
MERGES = (("Ġ", "+"), ("Ġ", "-"), ("Ġ", "*"), ("Ġ", "="))
MODEL_MAX_LENGTH = 256


def build_tokenizer():
    """A fresh ``tokenizers.Tokenizer``: 256 bytes, 4 merges, then the special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=_byte_of)
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=list(MERGES)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok


def _byte_of(ch: str) -> int:
    # Order the byte-level symbols by the byte they stand for (GPT-2's bytes_to_unicode).
    cp = ord(ch)
    if 33 <= cp <= 126 or 161 <= cp <= 172 or 174 <= cp <= 255:
        return cp
    return _UNPRINTABLE[cp - 256]


_UNPRINTABLE = [b for b in range(256) if not (33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255)]


def tokenizer_config(tok) -> dict:
    """tokenizer_config.json: special tokens, no automatic BOS (the template writes it)."""
    decoder = {
        str(tok.token_to_id(t)): {
            "content": t, "lstrip": False, "normalized": False,
            "rstrip": False, "single_word": False, "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": None,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": MODEL_MAX_LENGTH,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (BOS, EOS, PAD)],
        "chat_template": CHAT_TEMPLATE,
    }


def save_tokenizer(tok, out_dir: str | Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(tok), indent=2) + "\n")
    special_map = {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (BOS, EOS, PAD)],
    }
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
