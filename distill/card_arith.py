"""The tiny arith-student's MODEL_CARD.md from the old build's report (pure Python).

The old arith build (``distill/build.py`` before commit 4874947) wrote this card; after a
conversion, re-render it with the runtime's numbers (every other student's card is
``distill.card``'s):

    python -m thinkling.distill.card_arith distill/artifacts/arith-student \
        --modes bench/results/modes-arith-student.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from thinkling.bench.files import write_text_atomic

from thinkling.distill.data import ADAPTER_MIX, BASE_MIX, DataStats


def stats_dict(stats: DataStats) -> dict:
    """A JSON-friendly view of what the filter did while a data set was made."""
    return {
        "written": stats.written,
        "kept": stats.kept,
        "rejected_by_mistake": dict(stats.rejected_by_mistake),
        "missed_by_mistake": dict(stats.missed_by_mistake),
        "false_rejections": stats.false_rejections,
    }


def _table(acc: dict) -> str:
    names = {"direct": "direct", "think": "pre-thinking", "post": "post-thinking"}
    lines = ["| format | 1 op | 2 ops | 3 ops | 4 ops |", "|---|---|---|---|---|"]
    for mode, row in acc.items():
        cells = " | ".join(f"{100 * row[k]:.1f}%" for k in sorted(row, key=int))
        lines.append(f"| {names[mode]} | {cells} |")
    return "\n".join(lines)


def render(r: dict, modes: dict | None = None) -> str:
    """The model card text; with a ``bench modes`` record, also the runtime's numbers,
    and the status then requires the targets both in torch and through the runtime."""
    cfg, s, f = r["config"], r["config"]["student"], r["filter"]
    n = cfg["eval_per_op"]
    per_class = ", ".join(f"{k} {100 * v:.1f}%" for k, v in f["recall_per_class"].items())
    meets = _meets(r["accuracy"])
    if modes is not None:
        by_ops = modes["accuracy_by_ops"]
        meets = meets and _meets({"direct": by_ops["off"], "think": by_ops["on"]})
    status = "meets" if meets else "**does not meet**"
    runtime = render_runtime(modes) if modes is not None else ""
    return f"""# arith-student

Status: this build {status} the acceptance targets (see the end of this card).

A tiny llama-architecture "distilled student" for integer arithmetic (`+ - *`,
precedence, 1-4 operations, numbers 0-99, results 0..999) that answers directly,
thinks first, or answers then explains, on request. Built by `distill/` in this
repository with one command:

    python -m thinkling.distill.build --seed {cfg["seed"]} --out distill/artifacts/arith-student

## Files

- `base/` HF `LlamaForCausalLM` trained from scratch on direct answers only, with the tokenizer.
- `adapter/` PEFT LoRA (hybrid: direct / pre-thinking / post-thinking), r={cfg["lora_r"]},
  alpha={cfg["lora_alpha"]}, on q/k/v/o/gate/up/down, plus full `embed_tokens` and
  `lm_head` (`modules_to_save`, since the base never saw `<think>` or the mode tokens).
- `thinkling.json` the chat format for the runtime's thinking-format table.

## Model

| | |
|---|---|
| base parameters | {r["base_parameters"]:,} |
| adapter trainable parameters | {r["adapter_trainable_parameters"]:,} |
| layers / hidden / heads / MLP | {s["num_hidden_layers"]} / {s["hidden_size"]} / {s["num_attention_heads"]} / {s["intermediate_size"]} |
| context | {s["max_position_embeddings"]} tokens, rope_theta {s["rope_theta"]:g} |
| tokenizer | byte-level BPE, 256 bytes + 4 merges + 10 special tokens, one token per digit |

## Chat format

    prompt     <|bos|><|user|>{{question}}{{MODE}}<|assistant|>   MODE: <|direct|> <|think|> <|post|>
    direct     {{answer}}<|end|>
    pre        <think>{{a op b = c lines}}</think>{{answer}}<|end|>
    post       {{answer}}<think>{{a op b = c lines}}</think><|end|>

A chain force-closed with `</think>` (reasoning budget) is still followed by an answer:
{100 * ADAPTER_MIX.truncate_rate:.0f}% of the pre-thinking training chains were cut at a random point.

## Data

Teacher: a programmatic solver writing up to 5 distinct valid paths per problem
(precedence order, left-to-right, tens/ones splits, positives first, commuted, ...).
{100 * ADAPTER_MIX.preferred_rate:.0f}% of the training chains follow the canonical precedence path, one
`a op b = c` line per operation (`7 * 48 = 336`, `37 + 336 = 373`), so a one-operation chain
is the direct answer written out; the rest are drawn from all of the problem's paths.
A noisy teacher injects mistakes into {100 * ADAPTER_MIX.mistake_rate:.0f}% of what it writes
(wrong intermediate result, skipped step, wrong final answer); only chains that pass the
step-by-step filter are trained on. Problems are split by a hash of the expression: held-out
problems never appear in training.

- base: {r["base_data"]["kept"]:,} direct examples, op mix {BASE_MIX.op_weights}
- adapter: {r["adapter_data"]["kept"]:,} examples, op mix {ADAPTER_MIX.op_weights},
  formats {ADAPTER_MIX.mode_weights}; the filter rejected {r["adapter_data"]["written"] - r["adapter_data"]["kept"]:,}
  of {r["adapter_data"]["written"]:,} written (injected mistakes missed by the filter and kept:
  {sum(r["adapter_data"]["missed_by_mistake"].values())}; clean chains rejected: {r["adapter_data"]["false_rejections"]})

Filter on {f["chains"]:,} noisy chains ({f["injected"]:,} with injected mistakes):
precision {100 * f["precision"]:.1f}%, recall {100 * f["recall"]:.1f}% ({per_class}).
Missed mistakes are leaps whose missing value happens to be derivable from the problem's
numbers (e.g. a split of a literal).

## Training

Seed {cfg["seed"]}, {cfg["threads"]} CPU threads, AdamW, cosine schedule, loss on the completion
only, averaged per example (a 3-token direct answer weighs as much as a 70-token chain;
averaged per token, an earlier adapter forgot direct answers).

| phase | steps | batch | lr | wall time |
|---|---|---|---|---|
| base | {cfg["base"]["steps"]} | {cfg["base"]["batch_size"]} | {cfg["base"]["lr"]} | {r["base_train_seconds"] / 60:.1f} min |
| adapter | {cfg["adapter"]["steps"]} | {cfg["adapter"]["batch_size"]} | {cfg["adapter"]["lr"]} | {r["adapter_train_seconds"] / 60:.1f} min |

Whole build (data, training, evaluation): {r["total_seconds"] / 60:.1f} min.

## Held-out accuracy (merged base + adapter, torch fp32, greedy)

{n} held-out problems per number of operations, bare-expression prompts.

{_table(r["accuracy"])}

{_acceptance(r["accuracy"])}

`build_report.json` also records the accuracy on a small fixed sample
({r["check_sample"]["per_op"]} problems per #ops, seed {r["check_sample"]["seed"]}) that
`tests/test_distill_student.py` reproduces from these files.
{runtime}"""


def _acceptance(acc: dict) -> str:
    direct, think = acc["direct"], acc["think"]
    gains = [think[k] - direct[k] for k in sorted(direct, key=int) if int(k) >= 3]
    return (
        f"Targets: direct on 1 op {100 * direct[_key(direct, 1)]:.1f}% (target >= 90%); "
        f"pre-thinking minus direct on 3 and 4 ops "
        f"{' / '.join(f'{100 * g:+.1f}' for g in gains)} points (target >= +30)."
    )


def _meets(acc: dict) -> bool:
    direct, think = acc["direct"], acc["think"]
    gains = [think[k] - direct[k] for k in direct if int(k) >= 3]
    return direct[_key(direct, 1)] >= 0.9 and all(g >= 0.3 for g in gains)


def _key(row: dict, k: int):
    return k if k in row else str(k)


def render_runtime(modes: dict) -> str:
    """The 'through the runtime' section from a ``bench modes`` JSON record."""
    by_ops = modes["accuracy_by_ops"]
    rows = {r["mode"]: r for r in modes["rows"]}
    names = {"off": "direct (`off`)", "on": "pre-thinking (`on`)", "post": "post-thinking (`post`)"}
    lines = ["| mode | 1 op | 2 ops | 3 ops | 4 ops | all |", "|---|---|---|---|---|---|"]
    for mode, label in names.items():
        cells = " | ".join(f"{100 * by_ops[mode][k]:.0f}%" for k in sorted(by_ops[mode], key=int))
        lines.append(f"| {label} | {cells} | {100 * rows[mode]['accuracy']:.1f}% |")
    direct, think = by_ops["off"], by_ops["on"]
    gains = " / ".join(f"{100 * (think[k] - direct[k]):+.0f}" for k in ("3", "4") if k in direct)
    table = "\n".join(lines)
    return f"""
## Through the runtime ({modes.get("model", "arith-student")}, llama.cpp, greedy)

`bench modes --model {modes.get("model", "arith-student")} --tasks {modes.get("tasks", "arith-test")}`:
{modes["n"]} held-out problems (per-query outcomes in `bench/results/modes-arith-student.json`).

{table}

Targets through the runtime: direct on 1 op {100 * direct[_key(direct, 1)]:.0f}% (target >= 90%);
pre-thinking minus direct on 3 and 4 ops {gains} points (target >= +30).
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Re-render the arith-student's MODEL_CARD.md from build_report.json.")
    parser.add_argument("artifacts", help="folder with build_report.json")
    parser.add_argument("--modes", help="bench modes JSON of the converted model")
    args = parser.parse_args(argv)
    folder = Path(args.artifacts)
    modes = json.loads(Path(args.modes).read_text()) if args.modes else None
    write_text_atomic(folder / "MODEL_CARD.md", render(json.loads((folder / "build_report.json").read_text()), modes))


if __name__ == "__main__":
    main()
