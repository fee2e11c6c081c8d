"""Greedy-token parity between two machines (x86-64 native, aarch64 under qemu).

``collect`` runs on one machine and writes what its kernels produced: for each
model of a fixed set and each prompt of a fixed set, the greedy tokens with the
top logits of every step (read straight from the backend, below the sampler),
and the three explicit thinking modes of the arithmetic student through the
engine, each with a check that its output has the mode's format.

``compare`` joins two such files into a table (markdown + JSON): identical, or
the first step where the greedy tokens part and the logit gap there, so a
quantized ARM kernel that legitimately rounds differently shows how close the
two candidates were.

Used by ``scripts/arm64-check``; run it with the Python of the venv under test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

TOP_K = 8  # logits kept per step: enough to find the other side's token near a tie
# A divergence counts as a near tie (kernels rounding differently, not a broken kernel)
# when each side's logit for the other's token is within this of its own top logit; the
# logits of Gemma 3 270M differ by up to ~0.75 between x86 AVX-512 and ARM i8mm kernels
# on matching steps (bench/results/arm64/parity.md), so a gap below 1 is within that noise.
NEAR_TIE = 1.0
# (model, max new tokens): the student's three runtimes and the embedded model
MODELS = (("arith-student", 48), ("arith-student-onnx", 48), ("arith-student-onnx-int4", 48),
          ("gemma-3-270m", 24))
PROMPTS = {
    "arith": ["What is 37 + 4 * 12 - 9?", "58 - 7 * 3", "23 + 45 + 67 - 8", "14 + 31"],
    "chat": ["What is the capital of France?", "Write one sentence about the sea.",
             "List three colours.", "Why is the sky blue?"],
}
THINK_QUESTIONS = ("What is 37 + 4 * 12 - 9?", "58 - 7 * 3")
STEP = re.compile(r"^\d+ [-+*] \d+ = \d+$")


def _top(logits: np.ndarray, k: int = TOP_K) -> list[list]:
    idx = np.argpartition(-logits, k)[:k]
    idx = idx[np.argsort(-logits[idx], kind="stable")]
    return [[int(i), round(float(logits[i]), 5)] for i in idx]


def greedy_run(backend, prompt_tokens: list[int], max_new: int) -> dict:
    """Greedy decode from raw logits; ties go to the lowest id (``argmax``)."""
    tokens, tops = [], []
    logits = backend.eval(list(prompt_tokens))
    for _ in range(max_new):
        tok = int(np.argmax(logits))
        tops.append(_top(logits))
        tokens.append(tok)
        if backend.is_eog(tok):
            break
        logits = backend.eval([tok])
    text = b"".join(backend.token_bytes(t) for t in tokens).decode("utf-8", "replace")
    return {"prompt_tokens": len(prompt_tokens), "tokens": tokens, "top": tops, "text": text}


def collect_model(name: str, max_new: int, prompts: list[str]) -> dict:
    from thinkling.runtime.backends import BackendOptions, open_backend
    from thinkling.runtime.models import resolve
    from thinkling.runtime.prompts import render_chat
    from thinkling.runtime.types import Message

    ref = resolve(name)
    backend = open_backend(ref.backend, str(ref.path), BackendOptions(n_ctx=512, n_threads=1))
    try:
        runs = []
        for q in prompts:
            rendered = render_chat([Message("user", q)], backend.chat_template(),
                                   backend.bos_text)
            ptoks = backend.tokenize(rendered.text, add_special=rendered.add_bos, parse_special=True)
            backend.truncate(0)
            t0 = time.perf_counter()
            run = greedy_run(backend, ptoks, max_new)
            run.update(prompt=q, seconds=round(time.perf_counter() - t0, 2))
            runs.append(run)
        return {"file": ref.path.name, "backend": ref.backend, "runs": runs}
    finally:
        backend.close()


def think_format_ok(mode: str, text: str, reasoning: str, order: list[str]) -> bool:
    """The format each explicit mode promises (as tests/test_student.py checks it)."""
    answer = bool(re.fullmatch(r"\s*-?\d+\s*", text))
    lines = [ln.strip() for ln in reasoning.strip().splitlines() if ln.strip()]
    if mode == "off":
        return answer and reasoning == ""
    if mode == "on":
        return answer and bool(lines) and all(STEP.match(ln) for ln in lines)
    if mode == "post":  # the answer streams before any rationale
        return answer and "reasoning" in order and order.index("reasoning") > order.index("text")
    raise ValueError(mode)


def collect_think(name: str) -> list[dict]:
    from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams

    rows = []
    with Engine(name, EngineConfig(n_ctx=256, n_threads=1, queue_size=2)) as eng:
        for q in THINK_QUESTIONS:
            for mode in ("off", "on", "post"):
                req = GenerationRequest(messages=[Message("user", q)], max_tokens=160,
                                        sampling=SamplingParams(temperature=0), think=mode)
                text, reasoning, order = "", "", []
                for c in eng.stream(req):
                    for kind, piece in (("text", c.text), ("reasoning", c.reasoning)):
                        if piece:
                            if not order or order[-1] != kind:
                                order.append(kind)
                            text, reasoning = (text + piece, reasoning) if kind == "text" else (text, reasoning + piece)
                rows.append({"model": name, "question": q, "mode": mode, "text": text,
                             "reasoning": reasoning, "order": order,
                             "format_ok": think_format_ok(mode, text, reasoning, order)})
    return rows


def versions() -> dict:
    out = {"machine": platform.machine(), "python": platform.python_version(), "platform": platform.platform()}
    for mod, attr in (("llama_cpp", "__version__"), ("onnxruntime", "__version__"), ("numpy", "__version__"),
                      ("tokenizers", "__version__")):
        try:
            out[mod] = getattr(__import__(mod), attr)
        except ImportError:
            out[mod] = None
    try:
        from thinkling.runtime.backends.llama_cpp import build_info
        out["llama_build"] = build_info()
    except Exception as e:  # informative only
        out["llama_build"] = f"unavailable: {e}"
    return out


def collect(out: Path, models: list[str] | None = None) -> None:
    record = {"versions": versions(), "models": {}, "think": [], "seconds": {}}
    for name, max_new in MODELS:
        if models and name not in models:
            continue
        t0 = time.perf_counter()
        prompts = PROMPTS["arith"] if name.startswith("arith") else PROMPTS["chat"]
        record["models"][name] = collect_model(name, max_new, prompts)
        record["seconds"][name] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {record['seconds'][name]} s", file=sys.stderr, flush=True)
    for name in ("arith-student", "arith-student-onnx"):
        if models and name not in models:
            continue
        t0 = time.perf_counter()
        record["think"] += collect_think(name)
        record["seconds"][f"think {name}"] = round(time.perf_counter() - t0, 1)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, separators=(",", ":")) + "\n")  # one line per file: raw data
    os.replace(tmp, out)


# -- comparison: pure functions on the two records ------------------------------------------

def _logit(top: list[list], token: int) -> float | None:
    for tid, val in top:
        if tid == token:
            return val
    return None


def compare_run(ref: dict, other: dict) -> dict:
    """Compare one prompt's greedy run on two machines.

    ``max_abs_dlogit`` is over the steps where both machines chose the same
    tokens so far, on the ids both kept in their top-k. At the first divergence,
    ``gap_ref`` is the reference's top logit minus its logit for the other
    machine's token (None if that token fell outside its top-k), and the same
    the other way round.
    """
    a, b = ref["tokens"], other["tokens"]
    n = min(len(a), len(b))
    first = next((i for i in range(n) if a[i] != b[i]), None)
    if first is None and len(a) != len(b):
        first = n
    upto = n if first is None else first
    dmax = 0.0
    for i in range(min(upto + 1, n)):  # the divergent step's logits are still comparable
        mine = dict((t, v) for t, v in ref["top"][i])
        for t, v in other["top"][i]:
            if t in mine:
                dmax = max(dmax, abs(mine[t] - v))
    row = {"prompt": ref["prompt"], "tokens_ref": len(a), "tokens_other": len(b),
           "identical": first is None, "first_divergence": first,
           "max_abs_dlogit": round(dmax, 5), "text_ref": ref["text"], "text_other": other["text"]}
    if first is not None and first < n:
        ta, tb = a[first], b[first]
        la, lb = _logit(ref["top"][first], tb), _logit(other["top"][first], ta)
        row.update(token_ref=ta, token_other=tb,
                   gap_ref=None if la is None else round(ref["top"][first][0][1] - la, 5),
                   gap_other=None if lb is None else round(other["top"][first][0][1] - lb, 5))
    row["verdict"] = verdict(row)
    return row


def verdict(row: dict) -> str:
    """``identical``, ``near tie`` (a divergence both sides nearly agreed on) or ``different``."""
    if row["identical"]:
        return "identical"
    gaps = (row.get("gap_ref"), row.get("gap_other"))
    return "near tie" if all(g is not None and g <= NEAR_TIE for g in gaps) else "different"


def compare(ref: dict, other: dict) -> dict:
    """Join two ``collect`` records (same script, two machines) into the table."""
    models = {}
    for name, m in ref["models"].items():
        if name not in other["models"]:
            models[name] = {"missing_on_other": True}
            continue
        rows = [compare_run(r, o) for r, o in zip(m["runs"], other["models"][name]["runs"])]
        complete = len(rows) == len(m["runs"])
        models[name] = {"backend": m["backend"], "rows": rows,
                        "identical": complete and all(r["identical"] for r in rows),
                        "ok": complete and all(r["verdict"] != "different" for r in rows)}
    think = []
    other_think = {(t["model"], t["question"], t["mode"]): t for t in other["think"]}
    for t in ref["think"]:
        o = other_think.get((t["model"], t["question"], t["mode"]))
        think.append({"model": t["model"], "question": t["question"], "mode": t["mode"],
                      "format_ok_ref": t["format_ok"], "format_ok_other": None if o is None else o["format_ok"],
                      "same_output": o is not None and (t["text"], t["reasoning"]) == (o["text"], o["reasoning"]),
                      "text": t["text"], "reasoning_lines": len(t["reasoning"].strip().splitlines())})
    think_ok = all(t["same_output"] and t["format_ok_other"] for t in think)
    return {"ref": ref["versions"], "other": other["versions"], "models": models, "think": think,
            "seconds_ref": ref["seconds"], "seconds_other": other["seconds"],
            "all_identical": all(m.get("identical", False) for m in models.values()) and think_ok,
            "ok": all(m.get("ok", False) for m in models.values()) and think_ok}


def _cell(v) -> str:
    return "" if v is None else str(v).replace("|", "\\|").replace("\n", "⏎")


def markdown(table: dict, ref_label: str, other_label: str) -> str:
    r, o = table["ref"], table["other"]
    lines = [f"# Greedy parity: {other_label} against {ref_label}", "",
             "| | " + ref_label + " | " + other_label + " |", "| --- | --- | --- |"]
    for key in ("machine", "python", "llama_cpp", "llama_build", "onnxruntime", "numpy", "tokenizers"):
        lines.append(f"| {key} | {_cell(r.get(key))} | {_cell(o.get(key))} |")
    lines += ["", "## Greedy tokens (raw logits, argmax)", "",
              "| model | backend | prompt | tokens | identical | first divergence | gap there (ref / other) "
              "| max abs Δlogit before it |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in table["models"].items():
        for row in m.get("rows", []):
            gap = "" if row["identical"] else f"{_cell(row.get('gap_ref'))} / {_cell(row.get('gap_other'))}"
            lines.append(f"| {name} | {m['backend']} | {_cell(row['prompt'])} | {row['tokens_ref']} / "
                         f"{row['tokens_other']} | {'yes' if row['identical'] else '**no**: ' + row['verdict']} | "
                         f"{_cell(row['first_divergence'])} | {gap} | {row['max_abs_dlogit']} |")
    lines += ["", "## Thinking modes through the engine (greedy)", "",
              "| model | question | mode | format ok (ref / other) | same output | answer |",
              "| --- | --- | --- | --- | --- | --- |"]
    for t in table["think"]:
        lines.append(f"| {t['model']} | {_cell(t['question'])} | {t['mode']} | {t['format_ok_ref']} / "
                     f"{t['format_ok_other']} | {'yes' if t['same_output'] else '**no**'} | {_cell(t['text'].strip())} |")
    lines += ["", f"All identical: **{'yes' if table['all_identical'] else 'no'}**; every divergence a near "
              f"tie (gap at most {NEAR_TIE:g} logit on both sides) and every thinking mode identical: "
              f"**{'yes' if table['ok'] else 'no'}**.", "",
              "Gap: a side's top logit minus its logit for the token the other side chose. "
              "Δlogit: over the steps before the first divergence (and at it), on the ids both kept "
              f"among their top {TOP_K}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--models", nargs="*", help="a subset of the fixed model set")
    k = sub.add_parser("compare")
    k.add_argument("ref", type=Path)
    k.add_argument("other", type=Path)
    k.add_argument("--labels", nargs=2, default=["x86-64 (native)", "aarch64 (qemu-user)"])
    k.add_argument("--json", type=Path, required=True)
    k.add_argument("--markdown", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "collect":
        collect(args.out, args.models)
        return 0
    table = compare(json.loads(args.ref.read_text()), json.loads(args.other.read_text()))
    table["labels"] = args.labels
    args.json.write_text(json.dumps(table, indent=1) + "\n")
    args.markdown.write_text(markdown(table, *args.labels))
    print(f"all identical: {table['all_identical']}; ok (identical or near ties): {table['ok']}")
    return 0 if table["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
