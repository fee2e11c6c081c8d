"""A GGUF file as a conversion source: dequantized, HF-named tensors and an HF-style config.

``thinkling convert base.gguf --lora adapter/ --out dir --gguf q8_0,q4_k_m --check``
merges a PEFT adapter (trained on the dequantized model, e.g. transformers'
``from_pretrained(..., gguf_file=...)``) into a GGUF base. ``GGUFModel`` has the
interface of ``source.HFModel``, so the merge (``weights.MergedWeights``), the
writer and the numpy reference read it exactly as they read an HF folder:

- tensors are dequantized one at a time with gguf-py (``gguf.quants.dequantize``),
  so the reference is the dequantized base, and the outputs are quantized twice;
- names go back through the architecture's table (``archs.py``) inverted, and the
  layout changes are undone: Gemma's norms are stored as ``1 + w`` in GGUF and
  become ``w`` again; llama's permuted q/k rows are un-permuted;
- the config is rebuilt from the GGUF's architecture keys;
- the vocabulary is copied key for key (``tokenizer.*``), so the merged model
  tokenizes exactly like its base; an adapter folder may carry its own
  ``chat_template.jinja``, which then replaces the base's template.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .archs import ARCHS, EMBED, GLOBAL_TENSORS, HEAD, ArchSpec
from .errors import ConversionError, CorruptFile, UnsupportedArchitecture
from .plan import layout_transform, unpermute_rope

_HF_CLASS = {name: spec.hf_classes[0] for name, spec in ARCHS.items()}


class GGUFTensor:
    """One tensor of the source: its reader entry and its HF (row-major) shape."""

    def __init__(self, entry, shape: tuple[int, ...], transform: str):
        self.entry, self.shape, self.transform = entry, shape, transform
        self.dtype = entry.tensor_type.name


def _inverse_names(spec: ArchSpec, n_layers: int) -> dict[str, tuple[str, str]]:
    """GGUF name -> (HF name, the layout change to undo), from the writer's own table and rule."""
    out = {g: (h, "plus_one" if spec.norm_plus_one and h == "model.norm.weight" else "")
           for h, g in GLOBAL_TENSORS.items()}
    for i in range(n_layers):
        for local, g in spec.layer_tensors.items():
            out[f"blk.{i}.{g}"] = (f"model.layers.{i}.{local}", layout_transform(spec, local))
    return out


def _f32(x) -> float:
    """A float32 header value as the decimal it was written from (1e-06, not 9.99999997e-07)."""
    return float(f"{float(x):.7g}")


def _hf_config(meta: dict, arch: str, tied: bool, n_vocab: int) -> dict:
    """An HF ``config.json`` equivalent from the GGUF's architecture keys."""
    def get(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    n_heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    cfg = {
        "architectures": [_HF_CLASS[arch]],
        "model_type": arch,
        "vocab_size": n_vocab,
        "hidden_size": hidden,
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(get("attention.head_count_kv", n_heads)),
        "head_dim": int(get("attention.key_length", hidden // n_heads)),
        "intermediate_size": int(get("feed_forward_length")),
        "max_position_embeddings": int(get("context_length", 2048)),
        "rms_norm_eps": _f32(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": _f32(get("rope.freq_base", 10000.0)),
        "tie_word_embeddings": tied,
        "hidden_act": ARCHS[arch].activation if arch != "gemma3" else "gelu_pytorch_tanh",
    }
    if get("rope.scaling.type") == "linear":
        cfg["rope_scaling"] = {"rope_type": "linear", "factor": _f32(get("rope.scaling.factor"))}
    if arch == "gemma3":
        cfg.update(hidden_activation="gelu_pytorch_tanh", rope_local_base_freq=10000.0,
                   query_pre_attn_scalar=cfg["head_dim"], sliding_window=int(get("attention.sliding_window", 0)))
        if get("final_logit_softcapping"):
            cfg["final_logit_softcapping"] = _f32(get("final_logit_softcapping"))
    return cfg


class GGUFModel:
    """A GGUF file read as an HF model: ``config``, ``tensors``, ``load(name)`` (float32)."""

    def __init__(self, path: str | Path):
        from gguf import GGUFReader

        from thinkling.runtime.errors import InvalidModelFile
        from thinkling.runtime.modelinfo import check_gguf

        self.path = Path(path)
        try:
            check_gguf(self.path)  # truncated files and tensors past the end, before the reader maps it
        except InvalidModelFile as e:
            raise CorruptFile(str(self.path), e.reason) from None
        try:
            reader = GGUFReader(self.path)
        except Exception as e:  # gguf-py raises ValueError/struct errors on malformed headers
            raise CorruptFile(str(self.path), f"unreadable GGUF ({e})") from None
        self.metadata = {f.name: f.contents() for f in reader.fields.values()
                         if not f.name.startswith("GGUF.")}
        arch = str(self.metadata.get("general.architecture", "unknown"))
        if arch not in ARCHS:
            raise UnsupportedArchitecture(arch, sorted(_HF_CLASS.values()))
        self.arch = arch
        spec = ARCHS[arch]
        n_layers = int(self.metadata[f"{arch}.block_count"])
        names = _inverse_names(spec, n_layers)
        self.tensors: dict[str, GGUFTensor] = {}
        for entry in reader.tensors:
            if entry.name not in names:
                raise ConversionError(f"{self.path}: tensor {entry.name} is not part of the {arch} architecture")
            hf, transform = names[entry.name]
            self.tensors[hf] = GGUFTensor(entry, tuple(int(d) for d in reversed(entry.shape)), transform)
        if EMBED not in self.tensors:
            raise ConversionError(f"{self.path}: no token_embd.weight")
        tied = HEAD not in self.tensors
        n_vocab = self.tensors[EMBED].shape[0]
        self.config = _hf_config(self.metadata, arch, tied, n_vocab)
        self._n_heads = (self.config["num_attention_heads"], self.config["num_key_value_heads"])

    def has(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def load(self, name: str) -> np.ndarray:
        """The dequantized tensor in HF layout (a new float32 array)."""
        from gguf.quants import dequantize

        t = self.tensors[name]
        w = np.asarray(dequantize(t.entry.data, t.entry.tensor_type), dtype=np.float32).reshape(t.shape)
        if t.transform == "plus_one":
            return w - np.float32(1.0)
        if t.transform in ("permute_q", "permute_k"):
            return unpermute_rope(w, self._n_heads[0] if t.transform == "permute_q" else self._n_heads[1])
        return np.array(w, copy=True)

    def dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})

    def files(self) -> list[Path]:
        return [self.path]

    def vocab_metadata(self, chat_template: str | None = None) -> dict[str, object]:
        """The base's ``tokenizer.*`` keys as they are, the chat template optionally replaced."""
        kv = {k: v for k, v in self.metadata.items() if k.startswith("tokenizer.")}
        if chat_template is not None:
            kv["tokenizer.chat_template"] = chat_template
        return kv


class GGUFVocab:
    """The vocabulary of a GGUF source, for ``pipeline._prepare`` (only ``metadata()`` is read)."""

    def __init__(self, model: GGUFModel, chat_template: str | None):
        self._kv = model.vocab_metadata(chat_template)

    def metadata(self) -> dict[str, object]:
        return dict(self._kv)
