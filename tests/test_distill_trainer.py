"""The distill trainer (TRL's SFTTrainer + our loss) on the tiny llama student, end to end.

Data comes from ``python -m thinkling.distill data`` (two reasoning-gym tasks in the tiny
student's chat format); training runs a few real optimizer steps on a CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [distill] extra")
pytest.importorskip("trl", reason="needs the [distill] extra")
pytest.importorskip("reasoning_gym", reason="needs reasoning-gym (the bench extra)")

from thinkling.distill.trainer import IGNORE, CheckpointError, DataError, TrainOptions, train  # noqa: E402

RECIPE = "arith-student"  # the 0.92M-parameter llama: seconds per step on a CPU
OPTS = TrainOptions(steps=12, batch_size=8, lr=2e-3, warmup=0, save_every=6, log_every=1, threads=1)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from thinkling.distill.__main__ import main

    out = tmp_path_factory.mktemp("data")
    assert main(["data", "--task", "basic_arithmetic,calendar", "--per-task", "40", "--chat", "arith",
                 "--seed", "0", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def run(data_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    return out, train(RECIPE, data_dir, out, OPTS)


def _losses(report: dict) -> list[float]:
    return [row["loss"] for row in report["log"] if "loss" in row]


def test_smoke_build_saves_an_adapter_and_the_loss_goes_down(run, data_dir):
    out, report = run
    tasks = {json.loads(line)["task"] for line in (data_dir / "train.jsonl").read_text().splitlines()}
    assert tasks == {"basic_arithmetic", "calendar"}
    assert report["global_step"] == OPTS.steps
    losses = _losses(report)
    assert len(losses) == OPTS.steps
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    adapter = out / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "chat_template.jinja", "thinkling.json"):
        assert (adapter / name).is_file(), name
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "../base" and config["r"] == 64
    from thinkling.distill.chat import THINKLING_JSON

    assert json.loads((adapter / "thinkling.json").read_text()) == THINKLING_JSON


def test_saved_adapter_loads_on_the_base_and_changes_its_output(run):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from thinkling.distill.recipes import ARTIFACTS

    out, _ = run
    base = AutoModelForCausalLM.from_pretrained(ARTIFACTS / "arith-student" / "base")
    ids = torch.tensor([[261, 70, 71, 72]])
    before = base(ids).logits
    model = PeftModel.from_pretrained(base, out / "adapter")
    assert not torch.allclose(model(ids).logits, before)


def test_resume_continues_the_step_count(run, data_dir):
    out, _ = run
    with pytest.raises(CheckpointError):
        train(RECIPE, data_dir, out, OPTS)  # checkpoints there, but no resume asked
    report = train(RECIPE, data_dir, out, replace(OPTS, steps=15, resume=True))
    assert report["resumed_from"] == "checkpoint-12"
    assert report["global_step"] == 15
    steps = [row["step"] for row in report["log"] if "loss" in row]
    assert steps == list(range(1, 16))  # the checkpoint's history, then the three new steps
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-15"]


def test_prompt_tokens_carry_no_loss(data_dir):
    """TRL builds the labels from our completion mask: -100 over the prompt, the ids after it."""
    from thinkling.distill.recipes import get_recipe
    from thinkling.distill.trainer import encode_rows, make_trainer_class, peft_model, read_rows, sft_config

    recipe = get_recipe(RECIPE)
    base, tok = recipe.load_base()
    rows = read_rows(data_dir)[:20]
    dataset, _ = encode_rows(rows, tok, recipe.max_length)
    trainer = make_trainer_class()(model=peft_model(base, recipe, None), processing_class=tok,
                                   args=sft_config(recipe, OPTS, data_dir / "unused"), train_dataset=dataset)
    for row, example in zip(rows, trainer.train_dataset):
        n_prompt = len(tok(row["prompt"], add_special_tokens=False)["input_ids"])
        completion = tok(row["completion"], add_special_tokens=False)["input_ids"]
        assert example["labels"][:n_prompt] == [IGNORE] * n_prompt
        assert example["labels"][n_prompt:] == completion == example["input_ids"][n_prompt:]


def test_batches_are_grouped_by_length_and_taken_in_random_order():
    import random

    from thinkling.distill.trainer import length_grouped_batches

    rng = random.Random(0)
    lengths = [rng.randrange(5, 200) for _ in range(4003)]
    bs = 16
    order = length_grouped_batches(lengths, bs, seed=3, epoch=0)
    assert sorted(order) == list(range(len(lengths)))  # every row once
    batches = [order[i:i + bs] for i in range(0, len(order), bs)]
    assert len(batches[-1]) == len(lengths) % bs  # the short batch last: the loader cuts every bs
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # grouped: random batches of these lengths spread ~170
    # transformers' own order takes each 50 batches longest first (every adjacent pair falls);
    # shuffled, about half fall
    tops = [max(lengths[i] for i in b) for b in batches[:-1]]
    falls = sum(a > b for a, b in zip(tops, tops[1:])) / (len(tops) - 1)
    assert 0.35 < falls < 0.65, falls
    assert length_grouped_batches(lengths, bs, seed=3, epoch=0) == order  # resumable
    assert length_grouped_batches(lengths, bs, seed=3, epoch=1) != order


def test_the_trainer_samples_through_the_shuffled_grouping(data_dir):
    from thinkling.distill.recipes import get_recipe
    from thinkling.distill.trainer import (encode_rows, length_grouped_batches, make_trainer_class, peft_model,
                                           read_rows, sft_config)

    recipe = get_recipe(RECIPE)
    base, tok = recipe.load_base()
    dataset, _ = encode_rows(read_rows(data_dir), tok, recipe.max_length)
    trainer = make_trainer_class()(model=peft_model(base, recipe, None), processing_class=tok,
                                   args=sft_config(recipe, OPTS, data_dir / "unused"), train_dataset=dataset)
    sampler = trainer._get_train_sampler()
    lengths = [len(ids) for ids in dataset["input_ids"]]
    assert list(sampler) == length_grouped_batches(lengths, OPTS.batch_size, OPTS.seed, 0)
    sampler.set_epoch(2)
    assert list(sampler) == length_grouped_batches(lengths, OPTS.batch_size, OPTS.seed, 2)


def test_completion_loss_is_the_per_example_mean_of_full_logits():
    """The head-at-completion-positions loss against the model's full logits, computed independently."""
    import torch

    from thinkling.distill.recipes import get_recipe
    from thinkling.distill.trainer import add_completion_loss

    base, _ = get_recipe(RECIPE).load_base()
    add_completion_loss(base)
    torch.manual_seed(0)
    ids = torch.randint(0, 250, (3, 12))
    labels = ids.clone()
    labels[0, :4], labels[1, :9], labels[2, :11] = IGNORE, IGNORE, IGNORE  # 8, 3 and 1 completion tokens
    mask = torch.ones_like(ids)
    ours = base(input_ids=ids, attention_mask=mask, labels=labels, completion_loss=True)
    logits = base(input_ids=ids, attention_mask=mask).logits[:, :-1]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], ignore_index=IGNORE,
                                           reduction="none")
    taken = (labels[:, 1:] != IGNORE).sum(1)
    reference = (ce.sum(1) / taken).mean()
    assert torch.allclose(ours, reference, atol=1e-5)
    token_mean = ce.sum() / taken.sum()  # what TRL's own loss would be
    assert not torch.allclose(ours, token_mean, atol=1e-3)


def test_bad_input_is_one_line_not_a_traceback(tmp_path):
    with pytest.raises(DataError):
        train(RECIPE, tmp_path, tmp_path / "out", OPTS)
    (tmp_path / "train.jsonl").write_text('{"prompt": "x"}\n')
    proc = subprocess.run([sys.executable, "-m", "thinkling.distill", "train", "--recipe", RECIPE, "--data", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "train.jsonl:1" in proc.stderr, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "thinkling.distill", "train", "--recipe", "nope", "--data", str(tmp_path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown; known: arith-student" in proc.stderr
