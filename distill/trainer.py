"""The distill trainer: LoRA on a recipe's base with TRL's ``SFTTrainer`` (imports torch).

    python -m thinkling.distill train --recipe gemma-3-270m --data DIR --out OUTDIR \\
        [--steps N --batch-size B --lr LR --init-adapter PATH --resume]

``DIR/train.jsonl`` holds rows ``{"prompt", "completion", ...}`` already rendered in
the recipe's chat format (``python -m thinkling.distill data`` writes them). TRL owns the
batching, the warm-up + cosine schedule, checkpoints and resume, bf16 autocast and
devices (CUDA when present; several GPUs through ``accelerate launch -m thinkling.distill train``).
What is ours is one loss (``completion_loss``):

- the loss is taken on completion tokens only (TRL's ``completion_mask``), and every
  example weighs the same (its tokens' mean), so a three-token direct answer is not
  drowned by 100-token chains; TRL's own loss is the mean over all completion tokens
  of the batch;
- the LM head runs only at the completion positions. TRL's fused head does that on
  CUDA but scores every position on a CPU, and Gemma's 262k-row head costs more than
  its 18 layers together (docs/distill.md has the measured steps/s);
- batches are grouped by length, as transformers' ``group_by_length`` groups them, but
  taken in random order (``length_grouped_batches``). transformers runs each group of 50
  batches from the longest to the shortest, so a mix of chains and direct answers
  trains in a 50-step saw: chains, then post answers, then direct answers.

OUTDIR gets ``checkpoints/`` (every ``save_every`` steps, the last two kept),
``adapter/`` (PEFT, fp16, with the student's ``chat_template.jinja`` and
``thinkling.json``, so ``convert``'s first-use assembly takes it as is) and
``train_report.json``.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import time
import types
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from thinkling.distill import cli
from thinkling.distill.recipes import Recipe, get_recipe

log = logging.getLogger(__name__)
IGNORE = -100


class DataError(ValueError):
    """A training set that cannot be used: missing, unreadable or empty."""

    def __init__(self, path: Path, reason: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {reason}")
        self.path, self.reason, self.line = path, reason, line


class CheckpointError(ValueError):
    """OUTDIR holds checkpoints but the run was not asked to resume (or the reverse)."""

    def __init__(self, out: Path, reason: str):
        super().__init__(f"{out}: {reason}")
        self.out, self.reason = out, reason


@dataclass(frozen=True)
class TrainOptions:
    """One run; ``None`` takes the recipe's default."""

    steps: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    warmup: int | None = None
    save_every: int | None = None
    init_adapter: Path | None = None
    resume: bool = False
    seed: int = 0
    threads: int | None = None
    log_every: int = 10
    head_at_completion_only: bool = True  # False: TRL's own loss (for measuring the difference)


def read_rows(data: Path) -> list[dict]:
    """The rows of ``data/train.jsonl`` (or of ``data`` itself if it is a file)."""
    path = data / "train.jsonl" if data.is_dir() else data
    if not path.is_file():
        raise DataError(path, "no such file (write it with `python -m thinkling.distill data ... --out DIR`)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(path, f"not JSON ({e.msg})", n) from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str) \
                    or not isinstance(row.get("completion"), str):
                raise DataError(path, "a row needs string fields 'prompt' and 'completion'", n)
            rows.append(row)
    if not rows:
        raise DataError(path, "no rows")
    return rows


def encode_rows(rows: list[dict], tok, max_length: int, source: Path = Path("train.jsonl")):
    """(``datasets.Dataset`` of ``input_ids`` and ``completion_mask``, rows dropped): TRL's pre-tokenized form.

    Prompt and completion are tokenized apart, without added special tokens (the
    prompt carries its own ``<bos>`` where the format has one), which is how the
    runtime sees them: the prompt tokenized, the completion generated after it.
    Rows longer than ``max_length`` are dropped and counted, not truncated.
    """
    from datasets import Dataset

    prompts = tok([r["prompt"] for r in rows], add_special_tokens=False)["input_ids"]
    completions = tok([r["completion"] for r in rows], add_special_tokens=False)["input_ids"]
    ids, masks, dropped = [], [], 0
    for p, c in zip(prompts, completions):
        if len(p) + len(c) > max_length:
            dropped += 1
            continue
        ids.append(p + c)
        masks.append([0] * len(p) + [1] * len(c))
    if dropped:
        log.warning("%d of %d rows are longer than %d tokens and were dropped", dropped, len(rows), max_length)
    if not ids:
        raise DataError(source, f"every row is longer than the recipe's {max_length} tokens")
    return Dataset.from_dict({"input_ids": ids, "completion_mask": masks}), dropped


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[int]:
    """Row indices: batches of similar length (transformers' grouping), in shuffled order.

    transformers' ``get_length_grouped_indices`` sorts each mega-batch of 50 batches by
    length, longest first, and the Trainer takes them in that order; on a mix of chains
    and direct answers that is a curriculum nobody asked for, repeated every 50 steps,
    and a run stopped at a mega-batch's end has just trained on direct answers only.
    Here the full batches are shuffled (the last, short one stays last, since the data
    loader cuts the index stream every ``batch_size``); the same (seed, epoch) gives the
    same order, which is what resuming from a checkpoint needs.
    """
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = get_length_grouped_indices(lengths, batch_size, generator=g)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    tail = [b for b in batches if len(b) < batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()] + tail
    return [i for b in shuffled for i in b]


def length_grouped_sampler(lengths: list[int], batch_size: int, seed: int):
    """A ``torch`` Sampler over ``length_grouped_batches``; the Trainer calls ``set_epoch``."""
    from torch.utils.data import Sampler

    class LengthGroupedShuffled(Sampler):
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return len(lengths)

        def __iter__(self):
            return iter(length_grouped_batches(lengths, batch_size, seed, self.epoch))

    return LengthGroupedShuffled()


def add_completion_loss(model) -> None:
    """Patch ``model.forward``: ``completion_loss=True`` returns the mean per-example loss.

    The head is applied only where a label is taken (``labels != -100``), in bf16
    under autocast, and the cross-entropy in fp32. The patch sits on the base model,
    under PEFT and DDP, so the call still goes through their wrappers.
    """
    import torch

    original_forward = model.forward
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    @functools.wraps(type(model).forward)
    def forward(self, *args, completion_loss=False, **kwargs):
        if not completion_loss:
            return original_forward(*args, **kwargs)
        labels = kwargs.pop("labels")[:, 1:]  # (B, T-1): position t predicts token t+1
        kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = getattr(self, self.base_model_prefix)(*args, **kwargs).last_hidden_state[:, :-1]
        mask = labels != IGNORE
        logits = self.get_output_embeddings()(hidden[mask]).float()  # (N, vocab), N completion positions
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        ce = torch.nn.functional.cross_entropy(logits, labels[mask], reduction="none")
        per_row = torch.zeros(labels.shape[0], device=ce.device).index_add(0, mask.nonzero()[:, 0], ce)
        return (per_row / mask.sum(1).clamp(min=1)).mean()

    model.forward = types.MethodType(forward, model)


def make_trainer_class():
    """``SFTTrainer`` with the per-example, completion-positions loss (TRL imported lazily)."""
    from trl import SFTTrainer

    class StudentTrainer(SFTTrainer):
        def __init__(self, *args, head_at_completion_only: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.head_at_completion_only = head_at_completion_only
            if head_at_completion_only:
                add_completion_loss(self.model.get_base_model())
                # our loss is one micro-batch's mean: the Trainer divides it by the accumulation steps
                self.loss_is_scaled_for_ga = False

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return length_grouped_sampler([len(ids) for ids in dataset["input_ids"]],
                                          self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                          self.args.seed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not self.head_at_completion_only or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = model(**inputs, completion_loss=True)
            if self.model.training:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
                self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return loss

    return StudentTrainer


def load_adapter_weights(model, adapter: Path) -> None:
    """Start from a saved PEFT adapter's weights (fp16 on disk, widened to fp32).

    A model of a higher LoRA rank takes a lower-rank adapter in its first ranks: the
    saved A rows and B columns are copied in, the extra A rows keep PEFT's random
    initialisation and the extra B columns are zero, so the model computes exactly
    what the saved adapter did (alpha = r on both sides, the scale stays 1) and the
    added ranks start learning from there. PEFT has no such widening of its own.
    """
    import torch
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


def peft_model(base, recipe: Recipe, init_adapter: Path | None):
    """``base`` wrapped in the recipe's LoRA, starting from ``init_adapter`` if given."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=recipe.lora_r, lora_alpha=recipe.lora_alpha, lora_dropout=0.0,
                      target_modules=list(recipe.lora_targets), task_type="CAUSAL_LM",
                      modules_to_save=list(recipe.modules_to_save) or None)
    model = get_peft_model(base, lora)
    if init_adapter is not None:
        load_adapter_weights(model, init_adapter)
    return model


def sft_config(recipe: Recipe, opts: TrainOptions, checkpoints: Path):
    """TRL's ``SFTConfig`` for one run (warm-up, then cosine down to 5% of the peak lr)."""
    import torch
    from trl import SFTConfig

    cuda = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(checkpoints), max_steps=opts.steps, per_device_train_batch_size=opts.batch_size,
        learning_rate=opts.lr, warmup_steps=opts.warmup, weight_decay=recipe.weight_decay,
        lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": 0.05},
        adam_beta2=0.98, max_grad_norm=1.0, optim="adamw_torch",
        # bf16 autocast over fp32 weights (on a CPU transformers wants use_cpu for it)
        bf16=cuda or (recipe.bf16_on_cpu and cpu_has_bf16()), use_cpu=not cuda, activation_checkpointing=False,
        completion_only_loss=True, max_length=None, packing=False,
        # batches by length, so short direct answers are not padded to chains: our own sampler
        # (StudentTrainer._get_train_sampler), which takes them in random order
        save_strategy="steps", save_steps=opts.save_every, save_total_limit=2,
        logging_steps=opts.log_every, report_to="none", disable_tqdm=True,
        seed=opts.seed, data_seed=opts.seed, dataloader_num_workers=0,
    )


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX).

    Without it (AVX2 only) bf16 autocast is emulated: on this project's AVX2 VM a
    Gemma step did not finish in 150 s against seconds in fp32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_options(recipe: Recipe, opts: TrainOptions) -> TrainOptions:
    """``opts`` with every ``None`` replaced by the recipe's default."""
    return replace(opts, steps=opts.steps or recipe.steps, batch_size=opts.batch_size or recipe.batch_size,
                   lr=opts.lr or recipe.lr, warmup=recipe.warmup if opts.warmup is None else opts.warmup,
                   save_every=opts.save_every or recipe.save_every)


def latest_checkpoint(checkpoints: Path) -> Path | None:
    """The highest-numbered ``checkpoint-N`` folder, or None."""
    done = [p for p in checkpoints.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(done, key=lambda p: int(p.name.split("-")[-1])) if done else None


def save_adapter(model, recipe: Recipe, out: Path) -> None:
    """The PEFT adapter in fp16 with the student's chat template and thinkling.json, atomically."""
    from safetensors.torch import load_file, save_file

    fmt = recipe.format()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.peft_config["default"].base_model_name_or_path = recipe.base_name
    model.save_pretrained(tmp)
    weights = tmp / "adapter_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in load_file(weights).items()}, weights)  # half the bytes
    (tmp / "README.md").unlink(missing_ok=True)  # PEFT's empty template card
    (tmp / "thinkling.json").write_text(json.dumps(fmt.thinkling_json, indent=2) + "\n")
    (tmp / "chat_template.jinja").write_text(fmt.chat_template + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def train(recipe_name: str, data: Path, out: Path, opts: TrainOptions = TrainOptions()) -> dict:
    """Train (or, with ``opts.resume``, continue) one LoRA run; returns its report.

    Writes ``out/adapter`` and ``out/train_report.json``; checkpoints go to
    ``out/checkpoints``.
    """
    import torch

    from thinkling.bench.files import write_text_atomic

    recipe = get_recipe(recipe_name)
    recipe.format()  # an unknown chat format fails before the base is loaded
    opts = resolve_options(recipe, opts)
    out, checkpoints = Path(out), Path(out) / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if checkpoints.is_dir() else None
    if resume_from is not None and not opts.resume:
        raise CheckpointError(out, f"holds {resume_from.name}; pass --resume to continue it, or another --out")
    rows = read_rows(Path(data))
    if opts.threads:
        torch.set_num_threads(opts.threads)
    start = time.time()
    base, tok = recipe.load_base()
    load_s = time.time() - start
    dataset, dropped = encode_rows(rows, tok, recipe.max_length, Path(data))
    torch.manual_seed(opts.seed)
    model = peft_model(base, recipe, opts.init_adapter)
    trainer = make_trainer_class()(model=model, args=sft_config(recipe, opts, checkpoints), train_dataset=dataset,
                                   processing_class=tok, head_at_completion_only=opts.head_at_completion_only)
    t0 = time.time()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_s = time.time() - t0
    model.eval()
    trainable, total = model.get_nb_trainable_parameters()
    report = {
        "recipe": recipe.name, "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "data": str(data), "rows": len(rows), "rows_dropped_too_long": dropped,
        "resumed_from": resume_from.name if resume_from else None, "global_step": trainer.state.global_step,
        "device": "cuda" if torch.cuda.is_available() else "cpu", "threads": torch.get_num_threads(),
        "base_parameters": total - trainable, "adapter_trainable_parameters": trainable,
        "base_load_seconds": round(load_s, 1), "train_seconds_this_run": round(train_s, 1),
        "log": trainer.state.log_history,
    }
    if trainer.is_world_process_zero():  # under `accelerate launch`, one process writes
        save_adapter(model, recipe, out / "adapter")
        write_text_atomic(out / "train_report.json", json.dumps(report, indent=2) + "\n")
    log.info("trained %s to step %d in %.0fs; adapter in %s", recipe.name, trainer.state.global_step, train_s,
             out / "adapter")
    return report


def add_arguments(parser) -> None:
    """The ``train`` subcommand's flags (also used by ``python -m thinkling.distill build``)."""
    parser.add_argument("--recipe", required=True, help="base model recipe (distill/recipes.py)")
    parser.add_argument("--data", required=True, type=Path, help="folder with train.jsonl (or the file)")
    parser.add_argument("--out", required=True, type=Path, help="run folder: checkpoints/, adapter/, report")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (recipe default)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps before the cosine")
    parser.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (last two kept)")
    parser.add_argument("--init-adapter", type=Path, default=None,
                        help="start the LoRA weights from this PEFT adapter (a lower rank is widened)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--full-head", action="store_true",
                        help="TRL's own loss (head at every position, token mean); for measuring only")


def options_from_args(args) -> TrainOptions:
    """``TrainOptions`` from parsed ``add_arguments`` flags."""
    return TrainOptions(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup=args.warmup,
                        save_every=args.save_every, init_adapter=args.init_adapter, resume=args.resume,
                        seed=args.seed, threads=args.threads, head_at_completion_only=not args.full_head)


def run(args) -> None:
    """Run ``train`` from parsed ``add_arguments`` flags (errors raise; the CLI prints them)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(args.recipe, args.data, args.out, options_from_args(args))


def register(subparsers) -> None:
    """Add ``train`` to ``python -m thinkling.distill``'s subcommands."""
    parser = subparsers.add_parser("train", help="LoRA-train a recipe's base on a data folder (TRL)",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """``python -m thinkling.distill.trainer``: the same as ``python -m thinkling.distill train``."""
    return cli.command_main("train", argv)


if __name__ == "__main__":
    raise SystemExit(main())
