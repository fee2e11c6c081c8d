"""Training the Gemma 3 270M reasoning student: LoRA on the embedded GGUF base, on a CPU.

Dev-time only (imports torch, transformers, peft). The base is the embedded
default's Q4_K_M GGUF, which transformers dequantizes into a ``Gemma3ForCausalLM``
(the converter merges the adapter into the same dequantized weights).

What makes this affordable on 2 cores:
- bf16 autocast (matmuls ~2x faster than fp32 here); LoRA weights stay fp32;
- the 262k-row LM head runs only at completion positions: at every other position
  its logits are thrown away, and they would cost more than the 18 layers together;
- every example weighs the same in the loss (its tokens' mean), so a three-token
  direct answer is not drowned by chains.

The run checkpoints (adapter, optimizer, step) every ``ckpt_every`` steps and
resumes from the latest checkpoint, so a build longer than one working block
continues where it stopped; data order is a function of the seed and the step.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from distill.data import Example
from distill.gemma_chat import EOT, GEMMA_FORMAT
from distill.problems import Problem
from distill.train import IGNORE, batches, lr_at

log = logging.getLogger(__name__)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
MAX_NEW_TOKENS = {"direct": 8, "think": 160, "post": 160}


@dataclass(frozen=True)
class GemmaTrainConfig:
    """One LoRA run; the defaults are the committed build."""

    steps: int = 400
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.0
    lora_r: int = 16
    lora_alpha: int = 16
    log_every: int = 10
    eval_every: int = 50
    eval_per_op: int = 6
    ckpt_every: int = 25
    threads: int = 2


def load_base(gguf: str | Path):
    """(Gemma3ForCausalLM in fp32, tokenizer) from a GGUF file, dequantized by transformers."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM

    gguf = Path(gguf)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = Gemma3ForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.config.use_cache = False
    return model, tok


def encode(tok, ex: Example) -> tuple[list[int], list[int]]:
    """(input_ids, labels): the prompt (with its literal ``<bos>``) is masked out of the loss."""
    prompt = tok(ex.prompt, add_special_tokens=False)["input_ids"]
    completion = tok(ex.completion, add_special_tokens=False)["input_ids"]
    return prompt + completion, [IGNORE] * len(prompt) + completion


def example_loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean over examples of each example's mean completion-token cross-entropy.

    The head is applied to the completion positions only (see the module docstring).
    """
    inner = model.get_base_model().model if hasattr(model, "get_base_model") else model.model
    head = model.get_output_embeddings()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        labels = batch["labels"][:, 1:]  # position t predicts token t+1
        mask = labels != IGNORE
        logits = head(hidden[:, :-1][mask])  # (N, vocab) for the N completion positions only
    softcap = getattr(model.config, "final_logit_softcapping", None)
    logits = logits.float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    ce = torch.nn.functional.cross_entropy(logits, labels[mask], reduction="none")
    rows = mask.nonzero()[:, 0]
    per_row = torch.zeros(labels.shape[0]).index_add_(0, rows, ce)
    return (per_row / mask.sum(1).clamp(min=1)).mean()


@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 24) -> list[str]:
    """Greedy completions, text up to ``<end_of_turn>`` (left-padded batches)."""
    eot = tok.convert_tokens_to_ids(EOT)
    out: list[str] = []
    tok.padding_side = "left"
    for start in range(0, len(prompts), batch_size):
        enc = tok(prompts[start:start + batch_size], add_special_tokens=False, return_tensors="pt",
                  padding=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=[eot, tok.eos_token_id], pad_token_id=tok.pad_token_id,
                                 use_cache=True)
        for row in gen[:, enc["input_ids"].shape[1]:].tolist():
            if eot in row:
                row = row[: row.index(eot)]
            out.append(tok.decode(row, skip_special_tokens=True))
    return out


def accuracy(model, tok, problems: list[Problem], modes=("direct", "think")) -> dict[str, dict[int, float]]:
    """{mode: {n_ops: accuracy}} on held-out problems, greedy, bare-expression questions."""
    was_training = model.training
    model.eval()
    table: dict[str, dict[int, float]] = {}
    for mode in modes:
        prompts = [GEMMA_FORMAT.render_prompt(p.text, mode) for p in problems]
        texts = generate(model, tok, prompts, MAX_NEW_TOKENS[mode])
        ok = [GEMMA_FORMAT.split_completion(t, mode)[1] == str(p.value) for p, t in zip(problems, texts)]
        table[mode] = {k: sum(o for p, o in zip(problems, ok) if p.n_ops == k)
                       / max(1, sum(p.n_ops == k for p in problems)) for k in (1, 2, 3, 4)}
    if was_training:
        model.train()
    return table


def _latest_checkpoint(ckpt_dir: Path) -> Path | None:
    done = sorted(ckpt_dir.glob("step-*/state.pt"), key=lambda p: int(p.parent.name.split("-")[1]))
    return done[-1].parent if done else None


def _save_checkpoint(model, opt, step: int, ckpt_dir: Path) -> None:
    from peft import get_peft_model_state_dict

    final = ckpt_dir / f"step-{step:05d}"
    tmp = ckpt_dir / f".step-{step:05d}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save({"adapter": get_peft_model_state_dict(model), "optimizer": opt.state_dict(), "step": step},
               tmp / "state.pt")
    os.replace(tmp, final)
    for old in sorted(ckpt_dir.glob("step-*"))[:-2]:  # keep the last two
        for f in old.iterdir():
            f.unlink()
        old.rmdir()


def _resume(model, opt, ckpt_dir: Path) -> int:
    """Load the latest checkpoint into ``model`` and ``opt``; returns its step (0: none)."""
    from peft import set_peft_model_state_dict

    latest = _latest_checkpoint(ckpt_dir)
    if latest is None:
        return 0
    state = torch.load(latest / "state.pt", weights_only=False)
    set_peft_model_state_dict(model, state["adapter"])
    opt.load_state_dict(state["optimizer"])
    log.info("resuming from %s (step %d)", latest, state["step"])
    return state["step"]


def load_adapter_weights(model, adapter: Path) -> None:
    """Start from a saved PEFT adapter's weights (fp16 on disk, widened to fp32).

    A model of a higher LoRA rank takes a lower-rank adapter in its first ranks: the
    saved A rows and B columns are copied in, the extra A rows keep PEFT's random
    initialisation and the extra B columns are zero, so the model computes exactly
    what the saved adapter did (alpha = r on both sides, the scale stays 1) and the
    added ranks start learning from there. PEFT has no such widening of its own.
    """
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = {k: v.float() for k, v in load_file(adapter / "adapter_model.safetensors").items()}
    current = get_peft_model_state_dict(model)
    for key, saved in weights.items():
        have = current.get(key)
        if have is None or have.shape == saved.shape:
            continue
        widened_a = "lora_A" in key and saved.shape[1:] == have.shape[1:] and saved.shape[0] < have.shape[0]
        widened_b = "lora_B" in key and saved.shape[:1] == have.shape[:1] and saved.shape[1] < have.shape[1]
        if not (widened_a or widened_b):
            raise ValueError(f"{adapter}: {key} has shape {tuple(saved.shape)}, the model {tuple(have.shape)}")
        grown = have.detach().clone().float() if widened_a else torch.zeros_like(have, dtype=torch.float32)
        grown[tuple(slice(0, n) for n in saved.shape)] = saved
        weights[key] = grown
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise ValueError(f"{adapter}: adapter lacks {len(missing)} LoRA tensors, e.g. {missing[0]}")
    log.info("starting from adapter %s (%d tensors)", adapter, len(weights))


def train_lora(base, tok, examples: list[Example], cfg: GemmaTrainConfig, seed: int, work: Path,
               heldout: list[Problem], init_adapter: Path | None = None):
    """LoRA-train ``base`` on ``examples``, resuming from ``work/ckpt``; returns the PEFT model.

    With no checkpoint yet, the LoRA weights start from ``init_adapter`` when given
    (a second phase: fresh optimizer and schedule), else from PEFT's initialisation.

    Appends a row per ``log_every`` steps (loss, lr, tok/s) and per ``eval_every``
    steps (greedy held-out accuracy on ``heldout``) to ``work/train_log.jsonl``.
    """
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(seed)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=LORA_TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(base, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    start_step = _resume(model, opt, work / "ckpt")
    if start_step == 0 and init_adapter is not None:
        load_adapter_weights(model, init_adapter)
    data = batches([encode(tok, ex) for ex in examples], cfg.batch_size, tok.pad_token_id, random.Random(seed))
    for _ in range(start_step):  # the data order depends only on the seed and the step
        next(data)
    model.train()
    t0, loss_sum, tokens, n = time.time(), 0.0, 0, 0
    for step in range(start_step, cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = next(data)
        loss = example_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_sum, n = loss_sum + loss.item(), n + 1
        tokens += int(batch["attention_mask"].sum())
        row = {}
        if (step + 1) % cfg.log_every == 0:
            row = {"step": step + 1, "loss": round(loss_sum / n, 4), "lr": lr_at(step, cfg),
                   "tok_s": round(tokens / (time.time() - t0), 1), "elapsed_s": round(time.time() - t0, 1)}
            log.info("step %d/%d loss %.4f lr %.2e %.0f tok/s", step + 1, cfg.steps, row["loss"], row["lr"],
                     row["tok_s"])
            loss_sum, n = 0.0, 0
        if heldout and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            te = time.time()
            row.update(step=step + 1, heldout=accuracy(model, tok, heldout), eval_s=round(time.time() - te, 1))
            log.info("step %d held-out %s", step + 1, json.dumps(row["heldout"]))
        if row:
            with open(work / "train_log.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
        if (step + 1) % cfg.ckpt_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(model, opt, step + 1, work / "ckpt")
    model.eval()
    return model
