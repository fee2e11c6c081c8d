"""Held-out accuracy of the student, per number of operations and per format (imports torch).

Problems come from the 'eval' side of the hash split, so they are disjoint from
training by construction. Decoding is greedy. Run on a base + adapter with

    python -m distill.evaluate --model distill/artifacts/arith-student/base \
        --adapter distill/artifacts/arith-student/adapter --per-op 200
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import torch

from distill.chat import EOS, MODES, PAD, render_prompt, split_completion
from distill.problems import Problem, sample_split_problem

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = {"direct": 8, "think": 192, "post": 192}
# The small fixed sample whose accuracy the build records and tests/test_distill_student.py
# reproduces from the committed artifacts.
CHECK_PER_OP, CHECK_SEED = 25, 4321


def eval_problems(per_op: int, seed: int = 1234) -> list[Problem]:
    """A fixed sample of held-out problems: ``per_op`` for each of 1..4 operations."""
    rng = random.Random(seed)
    return [sample_split_problem(rng, k, "eval") for k in (1, 2, 3, 4) for _ in range(per_op)]


@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int, batch_size: int = 100) -> list[str]:
    """Greedy completions (text up to and without ``<|end|>``), left-padded batches."""
    pad_id, eos_id = tok.token_to_id(PAD), tok.token_to_id(EOS)
    out: list[str] = []
    for start in range(0, len(prompts), batch_size):
        rows = [tok.encode(p).ids for p in prompts[start : start + batch_size]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad_id] * (width - len(r)) + r for r in rows])  # (B, T)
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(r) for r in rows])[:, None]).long()
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=eos_id, pad_token_id=pad_id)
        for row in gen[:, width:].tolist():
            if eos_id in row:
                row = row[: row.index(eos_id)]
            out.append(tok.decode(row, skip_special_tokens=False))
    return out


def score(problems: list[Problem], completions: list[str], mode: str) -> list[bool]:
    """Whether each completion's answer equals the value of its problem."""
    return [split_completion(c, mode)[1] == str(p.value) for p, c in zip(problems, completions)]


def accuracy_table(model, tok, problems: list[Problem], modes=MODES) -> dict[str, dict[int, float]]:
    """{mode: {n_ops: accuracy}} on the given problems (bare-expression questions)."""
    table: dict[str, dict[int, float]] = {}
    for mode in modes:
        prompts = [render_prompt(p.text, mode) for p in problems]
        ok = score(problems, generate(model, tok, prompts, MAX_NEW_TOKENS[mode]), mode)
        table[mode] = {}
        for k in (1, 2, 3, 4):
            hits = [o for p, o in zip(problems, ok) if p.n_ops == k]
            if hits:
                table[mode][k] = sum(hits) / len(hits)
    return table


def format_table(table: dict[str, dict[int, float]]) -> str:
    """A markdown table: rows are formats, columns are numbers of operations."""
    lines = ["| format | 1 op | 2 ops | 3 ops | 4 ops |", "|---|---|---|---|---|"]
    names = {"direct": "direct", "think": "pre-thinking", "post": "post-thinking"}
    for mode, row in table.items():
        cells = " | ".join(f"{100 * row[k]:.1f}%" if k in row else "-" for k in (1, 2, 3, 4))
        lines.append(f"| {names[mode]} | {cells} |")
    return "\n".join(lines)


def load_student(model_dir: str | Path, adapter_dir: str | Path | None = None):
    """(merged model, tokenizers.Tokenizer) from an HF base and an optional PEFT adapter."""
    from tokenizers import Tokenizer
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    model.eval()
    return model, Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Held-out accuracy per #ops and format.")
    parser.add_argument("--model", required=True, help="HF base model directory")
    parser.add_argument("--adapter", default=None, help="PEFT adapter directory (merged)")
    parser.add_argument("--per-op", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    model, tok = load_student(args.model, args.adapter)
    table = accuracy_table(model, tok, eval_problems(args.per_op, args.seed), args.modes.split(","))
    print(json.dumps(table, indent=2) if args.json else format_table(table))


if __name__ == "__main__":
    main()
