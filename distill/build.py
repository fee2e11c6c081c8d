"""Build a student with one command: train -> assemble -> evaluate -> card (imports torch).

    python -m thinkling.distill build --recipe gemma-3-270m --data DIR --out OUTDIR \\
        --eval-tasks test.jsonl[,more.jsonl] [--name NAME] [train flags: --steps --init-adapter ...]

1. ``python -m thinkling.distill train`` into OUTDIR (``adapter/``, ``train_report.json``);
2. ``student.json`` (name, base, adapter sha256, GGUF type) and the merged GGUF in
   ``OUTDIR/gguf/``, by the converter's first-use assembly (``convert.assemble``);
3. ``python -m thinkling.distill evaluate`` of that GGUF on ``--eval-tasks`` into ``OUTDIR/eval.json``;
4. ``python -m thinkling.distill card``: ``OUTDIR/MODEL_CARD.md`` from those records.

Started again with the same arguments, a build continues where it stopped: training
resumes from its latest checkpoint (or is skipped once its adapter is written), the
assembly is skipped while the GGUF was merged from the same adapter, the evaluation
while ``eval.json`` is newer than the adapter.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from thinkling.distill import trainer
from thinkling.distill.recipes import get_recipe

log = logging.getLogger(__name__)
QUANT = "q8_0"


def _trained(out: Path, steps: int) -> bool:
    """Is ``out/adapter`` the end of a run of ``steps`` steps?"""
    try:
        report = json.loads((out / "train_report.json").read_text())
    except (OSError, ValueError):
        return False
    return (out / "adapter" / "adapter_model.safetensors").is_file() and report.get("global_step") == steps


def write_student_json(out: Path, name: str, base: str) -> Path:
    """``out/student.json``: the registry row the converter assembles the student from."""
    from thinkling.bench.files import write_text_atomic
    from thinkling.convert.manifest import sha256_file

    row = {"name": name, "base": base, "adapter": "adapter",
           "adapter_sha256": sha256_file(out / "adapter" / "adapter_model.safetensors"), "quant": QUANT}
    write_text_atomic(out / "student.json", json.dumps(row, indent=2) + "\n")
    return out / "student.json"


def assemble(out: Path, name: str, recipe_name: str) -> Path:
    """The merged GGUF in ``out/gguf`` (skipped while it was merged from the same adapter)."""
    from thinkling.convert.assemble import StudentRecipe, assemble_student

    recipe = get_recipe(recipe_name)
    student = StudentRecipe.load(write_student_json(out, name, recipe.base_name))
    return assemble_student(student, recipe.convert_source(), out / "gguf")


def build(recipe_name: str, data: Path, out: Path, eval_tasks: list[str], name: str | None = None,
          opts: trainer.TrainOptions = trainer.TrainOptions(), eval_limit: int | None = None) -> Path:
    """Train, assemble, evaluate and write the card of one student; returns the card's path."""
    from thinkling.distill.card import write_card
    from thinkling.distill.evaluate import EvalOptions, evaluate, write_records

    recipe = get_recipe(recipe_name)
    out = Path(out)
    name = name or out.name
    steps = opts.steps or recipe.steps
    if _trained(out, steps):
        log.info("build: %s already trained to step %d", out / "adapter", steps)
    else:
        resume = trainer.latest_checkpoint(out / "checkpoints") is not None
        trainer.train(recipe_name, data, out, replace(opts, resume=resume))
    gguf = assemble(out, name, recipe_name)
    records = out / "eval.json"
    adapter = out / "adapter" / "adapter_model.safetensors"
    if not records.is_file() or records.stat().st_mtime < adapter.stat().st_mtime:
        rec = evaluate(str(gguf), eval_tasks, EvalOptions(max_tokens=recipe.eval_max_tokens, limit=eval_limit))
        write_records(rec, records)
    return write_card(out)


def register(subparsers) -> None:
    """Add ``build`` to ``python -m thinkling.distill``'s subcommands."""
    parser = subparsers.add_parser("build", help="train -> assemble -> evaluate -> card, resumable",
                                   description=__doc__.split("\n\n")[0])
    trainer.add_arguments(parser)
    parser.add_argument("--eval-tasks", required=True,
                        help="task sets for the evaluation, comma-separated (python -m thinkling.distill export writes them)")
    parser.add_argument("--eval-limit", type=int, default=None, help="use only N rows of each task set")
    parser.add_argument("--name", default=None, help="the student's name (default: the --out folder's name)")
    parser.set_defaults(func=run)


def run(args) -> None:
    """Run ``build`` from parsed flags (errors raise; ``distill.cli`` prints them)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(build(args.recipe, args.data, args.out, args.eval_tasks.split(","), args.name,
                trainer.options_from_args(args), args.eval_limit))
