"""Training the student with transformers + peft (dev-time only; imports torch).

The base is a ``LlamaForCausalLM`` trained from scratch on direct answers; the
hybrid adapter is a PEFT LoRA trained on filtered direct / pre / post chains.
Loss is on the completion only (the prompt is given, not predicted).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distill.chat import PAD
from distill.data import Example

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass(frozen=True)
class StudentConfig:
    """Size of the llama-architecture student."""

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4  # head_dim 32
    intermediate_size: int = 384  # 3x hidden; every size a multiple of 32 (whole Q8_0 blocks)
    max_position_embeddings: int = 256
    rope_theta: float = 10000.0

    def to_llama(self, vocab_size: int, tok) -> LlamaConfig:
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            # Untied: the adapter replaces embed_tokens and lm_head separately.
            tie_word_embeddings=False,
            bos_token_id=tok.token_to_id("<|bos|>"),
            eos_token_id=tok.token_to_id("<|end|>"),
            pad_token_id=tok.token_to_id(PAD),
        )


@dataclass(frozen=True)
class TrainConfig:
    """One training phase."""

    steps: int
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    log_every: int = 50
    eval_every: int = 500
    # 'example': every example weighs the same (its tokens' mean loss), so a 3-token
    # direct answer counts as much as a 70-token chain. 'token': HF's mean over all
    # completion tokens, under which direct answers were ~3% of a mixed batch's loss
    # and the adapter forgot them (one-op direct 80% -> 5% in 1000 steps).
    loss: str = "example"


def build_student(cfg: StudentConfig, tok, seed: int) -> LlamaForCausalLM:
    """A freshly initialised student (deterministic for a seed)."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg.to_llama(tok.get_vocab_size(), tok))


def encode(tok, ex: Example) -> tuple[list[int], list[int]]:
    """(input_ids, labels) with the prompt masked out of the loss."""
    prompt = tok.encode(ex.prompt).ids
    completion = tok.encode(ex.completion).ids
    return prompt + completion, [IGNORE] * len(prompt) + completion


def batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int,
            rng: random.Random):
    """Endless padded batches; length-bucketed so short direct answers are not padded to chains."""
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        chunk = batch_size * 32
        for start in range(0, len(order), chunk):
            idx = sorted(order[start : start + chunk], key=lambda i: len(encoded[i][0]))
            group = [idx[k : k + batch_size] for k in range(0, len(idx), batch_size)]
            rng.shuffle(group)
            for b in group:
                yield _pad([encoded[i] for i in b], pad_id)


def _pad(rows, pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id)  # (B, T)
    labels = torch.full((len(rows), width), IGNORE)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for r, (x, y) in enumerate(rows):
        ids[r, : len(x)] = torch.tensor(x)
        labels[r, : len(y)] = torch.tensor(y)
        mask[r, : len(x)] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _loss(model, batch: dict[str, torch.Tensor], how: str) -> torch.Tensor:
    if how == "token":
        return model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none",
    ).view(labels.shape)
    mask = labels != IGNORE
    return ((ce * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then a cosine down to 5% of ``cfg.lr`` (reads lr, warmup, steps)."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(model, data, cfg: TrainConfig, evaluate: Callable[[], str] | None = None,
          name: str = "train") -> float:
    """Run ``cfg.steps`` AdamW steps over ``data`` (an iterator of batches); returns seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    model.train()
    start = time.time()
    loss_sum, tokens = 0.0, 0
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = next(data)
        loss = _loss(model, batch, cfg.loss)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.item()
        tokens += int(batch["attention_mask"].sum())
        if (step + 1) % cfg.log_every == 0:
            elapsed = time.time() - start
            log.info("%s step %d/%d loss %.4f lr %.2e %.0f tok/s %.0fs", name, step + 1,
                     cfg.steps, loss_sum / cfg.log_every, lr_at(step, cfg), tokens / elapsed, elapsed)
            loss_sum = 0.0
        if evaluate is not None and (step + 1) % cfg.eval_every == 0:
            model.eval()
            log.info("%s step %d held-out: %s", name, step + 1, evaluate())
            model.train()
    model.eval()
    return time.time() - start
