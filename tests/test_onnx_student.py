"""The distilled student on ONNX answers like the GGUF F16 student (greedy, held-out problems).

Skipped until the student and its GGUF/ONNX exports exist under distill/artifacts/.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime not installed (the onnx extra)")

from thinkling.distill.chat import render_prompt, split_completion  # noqa: E402
from thinkling.distill.problems import sample_split_problem  # noqa: E402
from thinkling.runtime.backends import BackendOptions, open_backend  # noqa: E402
from thinkling.runtime.generate import GenerationPlan, join_stream, stream_generate  # noqa: E402
from thinkling.runtime.types import SamplingParams  # noqa: E402

ART = Path(__file__).resolve().parents[1] / "distill" / "artifacts" / "arith-student"
GGUF_F16 = ART / "gguf" / "arith-student-f16.gguf"
ONNX = {q: ART / "onnx" / f"arith-student-onnx-{q}" / f"arith-student-{q}.onnx" for q in ("fp32", "int4")}
MIN_AGREEMENT = 0.95
PER_OP, SEED = 25, 2024  # 100 held-out problems, 1..4 operations


def held_out():
    rng = random.Random(SEED)
    return [sample_split_problem(rng, k, "eval") for k in (1, 2, 3, 4) for _ in range(PER_OP)]


def greedy_answers(kind: str, path: Path, mode: str, problems) -> list[str]:
    """Final answers through the runtime's generation loop (the path users get)."""
    b = open_backend(kind, str(path), BackendOptions(n_ctx=256, n_threads=2))
    try:
        out = []
        for p in problems:
            ids = b.tokenize(render_prompt(p.text, mode), add_special=False, parse_special=True)
            plan = GenerationPlan(prompt_tokens=ids, max_tokens=200, sampling=SamplingParams(temperature=0.0))
            text = join_stream(stream_generate(b, plan), "student").text
            out.append(split_completion(text, mode)[1])
        return out
    finally:
        b.close()


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["fp32", "int4"])
@pytest.mark.parametrize("mode", ["direct", "think"])
def test_onnx_student_answers_match_gguf_f16(quant, mode):
    if not GGUF_F16.is_file() or not ONNX[quant].is_file():
        pytest.skip(f"needs {GGUF_F16.relative_to(ART)} and {ONNX[quant].relative_to(ART)}")
    problems = held_out()
    ref = greedy_answers("llama_cpp", GGUF_F16, mode, problems)
    got = greedy_answers("onnx", ONNX[quant], mode, problems)
    agree = sum(a == b for a, b in zip(ref, got)) / len(problems)
    # The bar (>= 95%) is for arith-student-onnx, the fp32 export. int4 is weight-only
    # 4-bit: on the current under-trained student many answers are near-ties, and measured
    # agreement was 78% (direct) / 68% (think) on 2026-11-26; a broken graph agrees on ~0-10%.
    bar = MIN_AGREEMENT if quant == "fp32" else 0.6
    assert agree >= bar, f"{quant} {mode}: {agree:.1%} of answers agree with GGUF F16"
