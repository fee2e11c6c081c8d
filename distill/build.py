"""Build the arith-student from nothing with one command (imports torch):

    python -m distill.build --seed 0 --out distill/artifacts/arith-student

tokenizer -> base (from scratch, direct answers) -> hybrid LoRA adapter (filtered
direct / pre / post chains) -> held-out evaluation -> model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from distill import card
from distill.chat import THINKLING_JSON
from distill.data import ADAPTER_MIX, BASE_MIX, make_dataset
from distill.evaluate import (
    CHECK_PER_OP, CHECK_SEED, accuracy_table, eval_problems, format_table, load_student,
)
from distill.filter import filter_report
from distill.tokenizer import build_tokenizer, save_tokenizer
from distill.train import StudentConfig, TrainConfig, batches, build_student, encode, train

log = logging.getLogger(__name__)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the artifacts; the defaults are the committed run."""

    seed: int = 0
    student: StudentConfig = field(default_factory=StudentConfig)
    base: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=28000, batch_size=32, lr=2e-3, warmup=200, weight_decay=0.1, eval_every=4000))
    adapter: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=11000, batch_size=32, lr=2e-3, warmup=100, eval_every=1000))
    lora_r: int = 64
    lora_alpha: int = 64
    eval_per_op: int = 200
    # Both cores of an idle machine (1.4x one thread here). With other jobs on the
    # cores pass --threads 1: two OpenMP threads then ran 2-4x slower than one.
    threads: int = 2

    def scaled(self, scale: float) -> "BuildConfig":
        """A proportionally shorter run, for smoke tests and throughput probes."""
        def s(t: TrainConfig) -> TrainConfig:
            steps = max(10, int(t.steps * scale))
            return replace(t, steps=steps, warmup=min(t.warmup, steps // 5),
                           eval_every=max(10, int(t.eval_every * scale)))
        return replace(self, base=s(self.base), adapter=s(self.adapter),
                       eval_per_op=max(10, int(self.eval_per_op * min(1.0, scale * 10))))


def _quick_eval(model, tok, problems, modes) -> str:
    table = accuracy_table(model, tok, problems, modes)
    return "; ".join(f"{m} " + " ".join(f"{k}:{100 * v:.0f}%" for k, v in row.items())
                     for m, row in table.items())


def _train_phase(model, tok, mix, cfg: TrainConfig, seed: int, name: str, eval_modes):
    t0 = time.time()
    examples, stats = make_dataset(seed, mix, cfg.steps * cfg.batch_size)
    encoded = [encode(tok, ex) for ex in examples]
    log.info("%s data: %d examples (%d written, %d rejected by the filter) in %.0fs", name,
             len(examples), stats.written, stats.written - stats.kept, time.time() - t0)
    data = batches(encoded, cfg.batch_size, tok.token_to_id("<|pad|>"), random.Random(seed))
    probe = eval_problems(20, seed=seed + 99)
    seconds = train(model, data, cfg, lambda: _quick_eval(model, tok, probe, eval_modes), name)
    return seconds, stats


def build_base(cfg: BuildConfig, tok, out: Path):
    """Train the base from scratch on direct answers and save it in HF format."""
    from transformers import GenerationConfig

    model = build_student(cfg.student, tok, cfg.seed)
    log.info("base: %d parameters", model.num_parameters())
    seconds, stats = _train_phase(model, tok, BASE_MIX, cfg.base, cfg.seed, "base", ["direct"])
    model.save_pretrained(out / "base", safe_serialization=True)
    save_tokenizer(tok, out / "base")
    GenerationConfig(bos_token_id=model.config.bos_token_id, eos_token_id=model.config.eos_token_id,
                     pad_token_id=model.config.pad_token_id, do_sample=False,
                     ).save_pretrained(out / "base")
    return model, seconds, stats


def build_adapter(cfg: BuildConfig, tok, base, out: Path):
    """Train the hybrid LoRA adapter on the base and save it in PEFT format."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                      target_modules=LORA_TARGETS, task_type="CAUSAL_LM",
                      # The base never saw <think>, <|think|>, <|post|>: train those rows fully.
                      modules_to_save=["embed_tokens", "lm_head"])
    torch.manual_seed(cfg.seed + 1)
    model = get_peft_model(base, lora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("adapter: %d trainable of %d parameters", trainable, total)
    seconds, stats = _train_phase(model, tok, ADAPTER_MIX, cfg.adapter, cfg.seed + 1, "adapter",
                                  ["direct", "think"])
    model.peft_config["default"].base_model_name_or_path = "../base"
    model.save_pretrained(out / "adapter")
    (out / "adapter" / "README.md").unlink(missing_ok=True)  # PEFT's empty template card
    return model, seconds, stats, trainable


def check_sample(out: Path) -> dict:
    """Accuracy on the small fixed sample, from the saved files, as a test will load them."""
    model, tok = load_student(out / "base", out / "adapter")
    table = accuracy_table(model, tok, eval_problems(CHECK_PER_OP, CHECK_SEED))
    return {"per_op": CHECK_PER_OP, "seed": CHECK_SEED, "accuracy": table}


def build(cfg: BuildConfig, out: str | Path) -> dict:
    """Build every artifact into ``out`` and return the numbers the model card reports."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    start = time.time()
    tok = build_tokenizer()
    base, base_s, base_stats = build_base(cfg, tok, out)
    n_base = base.num_parameters()
    peft_model, adapter_s, adapter_stats, n_lora = build_adapter(cfg, tok, base, out)
    merged = peft_model.merge_and_unload()
    merged.eval()
    eval_start = time.time()
    table = accuracy_table(merged, tok, eval_problems(cfg.eval_per_op))
    log.info("held-out accuracy:\n%s", format_table(table))
    (out / "thinkling.json").write_text(json.dumps(THINKLING_JSON, indent=2) + "\n")
    check = check_sample(out)
    report = {
        "config": asdict(cfg),
        "base_parameters": n_base,
        "adapter_trainable_parameters": n_lora,
        "base_train_seconds": base_s,
        "adapter_train_seconds": adapter_s,
        "eval_seconds": time.time() - eval_start,
        "total_seconds": time.time() - start,
        "accuracy": table,
        "check_sample": check,
        "base_data": card.stats_dict(base_stats),
        "adapter_data": card.stats_dict(adapter_stats),
        "filter": filter_report(n=20000, seed=cfg.seed),
    }
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text(card.render(report))
    log.info("built %s in %.0fs", out, report["total_seconds"])
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the arith-student (base + hybrid LoRA).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="distill/artifacts/arith-student")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every phase (smoke tests)")
    parser.add_argument("--threads", type=int, default=BuildConfig.threads)
    parser.add_argument("--base-steps", type=int, default=None)
    parser.add_argument("--base-lr", type=float, default=None)
    parser.add_argument("--adapter-steps", type=int, default=None)
    parser.add_argument("--adapter-lr", type=float, default=None)
    parser.add_argument("--lora-r", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = replace(BuildConfig(seed=args.seed, threads=args.threads))
    if args.base_steps or args.base_lr:
        cfg = replace(cfg, base=replace(cfg.base, steps=args.base_steps or cfg.base.steps,
                                        lr=args.base_lr or cfg.base.lr))
    if args.adapter_steps or args.adapter_lr:
        cfg = replace(cfg, adapter=replace(cfg.adapter, steps=args.adapter_steps or cfg.adapter.steps,
                                           lr=args.adapter_lr or cfg.adapter.lr))
    if args.lora_r:
        cfg = replace(cfg, lora_r=args.lora_r, lora_alpha=args.lora_r)
    if args.scale != 1.0:
        cfg = cfg.scaled(args.scale)
    build(cfg, args.out)


if __name__ == "__main__":
    main()
