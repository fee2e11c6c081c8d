"""Build the Gemma 3 270M arithmetic reasoning student with one command (imports torch):

    python -m distill.gemma_build --seed 0

embedded Gemma 3 270M GGUF (dequantized) -> filtered multi-path chains in Gemma's
chat format -> LoRA (checkpointed, resumable) -> held-out table -> adapter/ in
``--out`` (small, committed). The runtime assembles the served student from the
embedded base plus this adapter on first use (``runtime/models.py``).

The run keeps its checkpoints in ``--work`` and continues from the latest one
when started again with the same arguments. A second phase starts from an
existing adapter with another mix and a fresh schedule:

    python -m distill.gemma_build --seed 1 --mix gemma-polish --steps 500 --lr 5e-4 --warmup 10 \
        --from-adapter distill/artifacts/gemma-arith/adapter --work build/gemma-arith-polish

and its report keeps the earlier phase's report under ``previous``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from distill import card
from distill.data import MIXES, make_dataset
from distill.evaluate import eval_problems
from distill.gemma_chat import CHAT_TEMPLATE, GEMMA_FORMAT, THINKLING_JSON
from distill.gemma_train import GemmaTrainConfig, accuracy, load_base, train_lora

log = logging.getLogger(__name__)
BASE_NAME = "gemma-3-270m"


def base_gguf() -> Path:
    """The embedded default's GGUF file (assembled from its PyPI package if needed)."""
    from runtime.models import resolve

    return resolve(BASE_NAME).path


def save_adapter(model, out: Path) -> None:
    """PEFT adapter in fp16 (half the bytes to commit; the merge widens it again)."""
    from safetensors.torch import load_file, save_file

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.peft_config["default"].base_model_name_or_path = BASE_NAME
    model.save_pretrained(tmp)
    weights = tmp / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(weights).items()}, weights)
    (tmp / "README.md").unlink(missing_ok=True)  # PEFT's empty template card
    (tmp / "thinkling.json").write_text(json.dumps(THINKLING_JSON, indent=2) + "\n")
    (tmp / "chat_template.jinja").write_text(CHAT_TEMPLATE + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build(cfg: GemmaTrainConfig, seed: int, out: Path, work: Path, final_per_op: int,
          mix_name: str = "gemma", from_adapter: Path | None = None) -> dict:
    """Train (or resume) one phase and write ``out/adapter`` and ``out/build_report.json``."""
    from convert.manifest import sha256_file

    mix = MIXES[mix_name]
    init = None
    if from_adapter is not None:
        weights = from_adapter / "adapter_model.safetensors"
        init = {"path": str(from_adapter), "sha256": sha256_file(weights)}
        # The starting adapter is copied aside first: --out/adapter is rewritten at the end.
        keep = work / "init-adapter"
        if not keep.is_dir():
            work.mkdir(parents=True, exist_ok=True)
            shutil.copytree(from_adapter, work / "init-adapter.tmp", dirs_exist_ok=True)
            report_before = from_adapter.parent / "build_report.json"
            if report_before.is_file():
                shutil.copy(report_before, work / "init-adapter.tmp" / "build_report.json")
            (work / "init-adapter.tmp").rename(keep)
        from_adapter = keep
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    start = time.time()
    gguf = base_gguf()
    base, tok = load_base(gguf)
    load_s = time.time() - start
    log.info("base %s: %d parameters, loaded in %.0fs", gguf.name, base.num_parameters(), load_s)
    t0 = time.time()
    examples, stats = make_dataset(seed, mix, cfg.steps * cfg.batch_size, GEMMA_FORMAT)
    log.info("data: %d examples (%d written, %d rejected by the filter) in %.0fs", len(examples),
             stats.written, stats.written - stats.kept, time.time() - t0)
    heldout = eval_problems(cfg.eval_per_op, seed=seed + 99) if cfg.eval_per_op else []
    t0 = time.time()
    model = train_lora(base, tok, examples, cfg, seed, work, heldout, from_adapter)
    train_s = time.time() - t0
    save_adapter(model, out / "adapter")
    t0 = time.time()
    table = accuracy(model, tok, eval_problems(final_per_op), modes=("direct", "think", "post")) \
        if final_per_op else None
    trainable, total = model.get_nb_trainable_parameters()
    report = {
        "seed": seed, "config": asdict(cfg), "mix_name": mix_name, "mix": repr(mix), "base": gguf.name,
        "init_adapter": init,
        "base_parameters": total - trainable, "adapter_trainable_parameters": trainable,
        "base_load_seconds": load_s, "train_seconds_this_run": train_s,
        "eval_seconds": time.time() - t0, "final_eval_per_op": final_per_op,
        "accuracy_hf_bf16": table, "data": card.stats_dict(stats),
        "train_log": [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
        if (work / "train_log.jsonl").is_file() else [],
    }
    if from_adapter is not None and (from_adapter / "build_report.json").is_file():
        report["previous"] = json.loads((from_adapter / "build_report.json").read_text())
    (out / "build_report.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("held-out (HF, bf16): %s", json.dumps(table))
    log.info("built %s in %.0fs", out, time.time() - start)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the Gemma 3 270M arithmetic student (LoRA).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="distill/artifacts/gemma-arith")
    parser.add_argument("--work", default="build/gemma-arith", help="checkpoints and the training log")
    parser.add_argument("--steps", type=int, default=GemmaTrainConfig.steps)
    parser.add_argument("--lr", type=float, default=GemmaTrainConfig.lr)
    parser.add_argument("--warmup", type=int, default=GemmaTrainConfig.warmup)
    parser.add_argument("--mix", choices=sorted(MIXES), default="gemma", help="training data mix")
    parser.add_argument("--from-adapter", type=Path, default=None,
                        help="start the LoRA weights from this adapter (a second phase)")
    parser.add_argument("--lora-r", type=int, default=GemmaTrainConfig.lora_r)
    parser.add_argument("--threads", type=int, default=GemmaTrainConfig.threads)
    parser.add_argument("--eval-every", type=int, default=GemmaTrainConfig.eval_every)
    parser.add_argument("--eval-per-op", type=int, default=GemmaTrainConfig.eval_per_op,
                        help="held-out problems per depth in the periodic evaluation (0: none)")
    parser.add_argument("--final-per-op", type=int, default=25, help="held-out problems per depth at the end (0: none)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = replace(GemmaTrainConfig(), steps=args.steps, lr=args.lr, warmup=args.warmup, lora_r=args.lora_r,
                  lora_alpha=args.lora_r, threads=args.threads, eval_every=args.eval_every,
                  eval_per_op=args.eval_per_op)
    build(cfg, args.seed, Path(args.out), Path(args.work), args.final_per_op, args.mix, args.from_adapter)


if __name__ == "__main__":
    main()
