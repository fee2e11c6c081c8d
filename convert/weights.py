"""Base model + adapter as one mapping of merged, HF-named float32 tensors.

Both the GGUF writer and the reference forward pass read weights through
this, so they see the same merge. Tensors are loaded and merged on access,
one at a time.

Tied embeddings follow what PEFT's ``merge_and_unload()`` produces:
- a LoRA on ``embed_tokens`` or on ``lm_head`` updates the one shared matrix,
  so both the input embedding and the output head move (the model stays tied);
- a full replacement (``modules_to_save``) of either one replaces only that
  module, which unties them: the other keeps the (LoRA-merged) shared matrix.
  With ``ensure_weight_tying`` the replacement applies to both.
When the merged model is untied, ``lm_head.weight`` appears as a key even if
the base checkpoint has none.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from .archs import EMBED, HEAD
from .lora import Adapter, load_adapter
from .source import HFModel, load_tensor


class MergedWeights(Mapping):
    """HF tensor name -> merged float32 array (loaded on access)."""

    def __init__(self, model: HFModel, adapter: Adapter | None = None):
        self.model, self.adapter = model, adapter
        self.base_tied = base_is_tied(model)
        repl = adapter.replacements if adapter else {}
        tying = bool(adapter and adapter.config.get("ensure_weight_tying"))
        self.tied = self.base_tied and (tying or not (EMBED in repl or HEAD in repl))
        names = [n for n in model.tensors if not (self.base_tied and n == HEAD)]
        if self.base_tied and not self.tied:
            names.append(HEAD)
        self._names = names

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        if self.base_tied and name in (EMBED, HEAD):
            return self._shared(name)
        w = self.model.load(name)
        return self.adapter.merged(name, w) if self.adapter is not None else w

    def _shared(self, name: str) -> np.ndarray:
        a = self.adapter
        if a is not None:
            other = HEAD if name == EMBED else EMBED
            if name in a.replacements:
                return load_tensor(a.replacements[name])
            if other in a.replacements and a.config.get("ensure_weight_tying"):
                return load_tensor(a.replacements[other])
        w = self.model.load(EMBED)
        if a is not None:
            for n in (EMBED, HEAD):  # both LoRAs land on the one shared matrix
                w = a.apply_lora(n, w)
        return w

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def shape(self, name: str) -> tuple[int, ...]:
        if name == HEAD and self.base_tied:
            return self.model.shape(EMBED)
        return self.model.shape(name)


def base_is_tied(model: HFModel) -> bool:
    """Does the base share its embedding with the output head? (config, else a missing lm_head)"""
    tie = model.config.get("tie_word_embeddings")
    return bool(tie) if tie is not None else not model.has(HEAD)


def base_shapes(model: HFModel) -> dict[str, tuple[int, ...]]:
    """Shapes an adapter may refer to; a tied base still has an (aliased) lm_head."""
    shapes = {n: r.shape for n, r in model.tensors.items()}
    if base_is_tied(model) and EMBED in shapes:
        shapes[HEAD] = shapes[EMBED]
    return shapes


def open_weights(src: str | Path, lora: str | Path | None = None) -> MergedWeights:
    """Read and validate ``src`` (an HF folder or a GGUF file) and ``lora``; nothing is
    loaded until accessed."""
    src = Path(src)
    if src.is_file():
        from .gguf_source import GGUFModel

        model = GGUFModel(src)
    else:
        model = HFModel(src)
    adapter = None
    if lora is not None:
        arch = (model.config.get("architectures") or [None])[0]
        adapter = load_adapter(lora, base_shapes(model), arch)
    return MergedWeights(model, adapter)
