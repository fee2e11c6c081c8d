"""Where a student's chains break: teacher-forced step accuracy by kind of step (no torch).

    python -m thinkling.distill.step_probe --model gemma-3-270m-arith --path place --chains 400

For held-out problems of 2-4 operations, the teacher's chain on ``--path`` is given
line by line; at each line the student sees the earlier (right) lines and the
operands, ``a op b = ``, and writes the result greedily through the runtime's
llama.cpp backend. Right results are counted per kind of step (operation, which
digits it touches, carry or borrow, operand sizes), so a chain style can be judged
by what the student gets right before a phase is trained on it. It measures the
arithmetic alone: the student's own choice of the next step is not tested.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

from thinkling.bench.files import write_text_atomic
from thinkling.distill.chat import THINK_OPEN
from thinkling.distill.gemma_chat import render_prompt
from thinkling.distill.problems import sample_split_problem
from thinkling.distill.teacher import FULLY_SPLIT, PLACE_SPLIT, Step, solve
from thinkling.runtime import models
from thinkling.runtime.backends.base import BackendOptions
from thinkling.runtime.backends.llama_cpp import open_backend
from thinkling.runtime.errors import ThinklingError
from thinkling.runtime.generate import GenerationPlan, stream_generate
from thinkling.runtime.types import SamplingParams

PATHS = {"split": FULLY_SPLIT, "place": PLACE_SPLIT}


def step_kind(st: Step) -> str:
    """A short name for what a step asks of the student (``+units-3d-carry``, ``mul``, ...)."""
    a, op, b = st.a, st.op, st.b
    if op == "*":
        return "mul"
    if op == "+" and a >= 100 and a % 100 == 0:
        return "+hundreds-back" + ("-carry" if b >= 100 else "")  # 400 + 44, 400 + 110
    if op == "-" and a == 100:
        return "-from-100"  # 100 - 16
    if op == "-" and a >= 100 and b and a % 100 == b:
        return "-remainder-off"  # 744 - 44
    if b >= 100 and b % 100 == 0:
        return op + "hundreds"  # 746 - 300
    big, small = (max(a, b), min(a, b)) if op == "+" else (a, b)
    size = f"{len(str(big))}d"
    if small < 10:
        part, carry = "units", (big % 10 + small > 9) if op == "+" else (big % 10 < small)
    elif small % 10 == 0:
        tens, t = (big // 10) % 10, small // 10
        part, carry = "tens", (tens + t > 9) if op == "+" else (tens < t)
    else:
        return f"{op}two-digit-{size}"
    return f"{op}{part}-{size}-{'carry' if carry else 'plain'}"


def probe(model: str = "gemma-3-270m-arith", path: str = "split", chains: int = 400, seed: int = 2,
          threads: int = 2) -> dict:
    """Teacher-forced results of ``chains`` held-out chains; returns the table."""
    ref = models.resolve(model)
    backend = open_backend(str(ref.path), BackendOptions(n_ctx=512, n_threads=threads))
    rng = random.Random(seed)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    errors: list[str] = []
    whole = done = 0
    t0 = time.time()
    try:
        while done < chains:
            problem = sample_split_problem(rng, rng.choice((2, 3, 4)), "eval")
            steps = solve(problem, PATHS[path])
            if steps is None:
                continue
            done += 1
            text = render_prompt(problem.text, "think") + THINK_OPEN
            all_right = True
            for st in steps:
                prompt = backend.tokenize(text + f"{st.a} {st.op} {st.b} = ", add_special=False)
                plan = GenerationPlan(prompt_tokens=prompt, max_tokens=6, stops=["\n", "<"],
                                      sampling=SamplingParams(temperature=0.0))
                out = "".join(c.text for c in stream_generate(backend, plan)).strip()
                kind = step_kind(st)
                counts[kind][1] += 1
                if out == str(st.c):
                    counts[kind][0] += 1
                else:
                    all_right = False
                    errors.append(f"{st.text.rsplit(' = ', 1)[0]} = {out} (want {st.c}) [{kind}]")
                text += st.text + "\n"
            whole += all_right
    finally:
        backend.close()
    right = sum(r for r, _ in counts.values())
    total = sum(n for _, n in counts.values())
    return {
        "model": ref.name, "model_file": Path(ref.path).name, "path": path, "chains": done, "seed": seed,
        "seconds": round(time.time() - t0, 1),
        "steps_right": right, "steps": total, "step_accuracy": round(right / max(1, total), 4),
        "chains_every_step_right": whole,
        "by_kind": {k: {"right": r, "steps": n, "accuracy": round(r / n, 4)} for k, (r, n) in sorted(counts.items())},
        "errors": errors,
    }


def format_table(rec: dict) -> str:
    lines = [f"{rec['model']} on the {rec['path']} path, {rec['chains']} held-out chains (seed {rec['seed']}): "
             f"{rec['steps_right']}/{rec['steps']} steps right ({rec['step_accuracy']:.1%}), "
             f"{rec['chains_every_step_right']} chains with every step right"]
    for kind, row in rec["by_kind"].items():
        lines.append(f"  {kind:<24} {row['right']:>5}/{row['steps']:<5} {row['accuracy']:.1%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Teacher-forced step accuracy of a student, by kind of step.")
    parser.add_argument("--model", default="gemma-3-270m-arith", help="a registered name or a GGUF path")
    parser.add_argument("--path", choices=sorted(PATHS), default="split", help="the teacher's chain style")
    parser.add_argument("--chains", type=int, default=400)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the whole record here (temp name, then rename)")
    args = parser.parse_args(argv)
    try:
        rec = probe(args.model, args.path, args.chains, args.seed, args.threads)
    except ThinklingError as e:  # an unknown model or a broken file: a message, not a traceback
        raise SystemExit(f"step_probe: {e}") from None
    print(format_table(rec))
    if args.json:
        write_text_atomic(args.json, json.dumps(rec, indent=1) + "\n")


if __name__ == "__main__":
    main()
