"""``bench speculative``: prompt-lookup speculative decoding against plain decoding, paired.

For every prompt, greedy generations with drafting off and on alternate
(``repeats`` times, the order rotated), in one engine, so both see the same
machine state. Reported: whether every pair produced the same tokens (it
must: drafting only changes how many positions one pass scores), the decode
time per token of each (first token -> end, so the prefix cache cannot favour
either side), and the per-prompt speedup's median with a bootstrap interval,
plus drafted and kept tokens.

Built-in prompt sets: ``arith`` (the held-out arithmetic problems; reasoning
chains repeat their numbers), ``rewrite`` (raw completions in which a base
model copies a passage back: quote-back and copy-edit requests repeat their
prompt) and ``free`` (open chat questions: new text, where drafting should
cost almost nothing).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams

from . import fingerprint as fp
from .modes import load_tasks

_SENTENCES = [
    "The quick brown fox jumps over the lazy dog near the old river bank every morning.",
    "Our team will meet on Thursday at ten to review the budget and the hiring plan.",
    "Water boils at one hundred degrees Celsius at sea level and at lower temperatures on mountains.",
    "Please send the signed contract to the legal department before the end of the month.",
    "The library opens at nine, closes at six, and stays open late on Wednesdays.",
    "A small village by the sea had one baker, one doctor and a very old lighthouse keeper.",
    "The train to the airport leaves every twenty minutes from the second platform.",
    "Mix the flour, the sugar and two eggs, then bake the cake for thirty minutes.",
    "The museum shows paintings, old maps and a collection of coins from many countries.",
    "Remember to water the plants, feed the cat and lock the back door before you leave.",
]
# raw completions that a base model continues by copying the passage (the "rewrite" set):
# what a copy-edit or quote-back request produces, and what a lookup drafts from
_COPY_TEMPLATES = [
    "Original: {s}\nCopy: ",
    "Sentence: {s}\nThe same sentence, repeated exactly: ",
    "Input: {t}\nOutput: {t}\nInput: {s}\nOutput: ",
    "Text: {s}\nText, once more: ",
    "{s}\n{s}\n",
]
_FREE = [
    "Why is the sky blue?", "Write a short poem about autumn.", "What is a good name for a cat?",
    "Explain what a computer does.", "Give me three ideas for a birthday party.",
    "Describe your favourite food.", "What should I pack for a trip to the beach?",
    "Tell me a fun fact about the ocean.", "How do plants grow?", "Write a sentence about the moon.",
    "What makes a good friend?", "Suggest a hobby for a rainy day.", "Describe a busy city street.",
    "What is the best way to learn a language?", "Invent a name for a new planet.",
    "Write the opening line of a mystery story.", "What do bees do all day?",
    "Give advice to someone starting a new job.", "Describe a sunset over the mountains.",
    "What is your favourite season and why?",
]


def prompt_set(spec: str) -> list[dict]:
    """``[{"prompt": raw text} | {"content": user message}]`` of a built-in set
    (``arith``, ``rewrite``, ``free``) or of a task file (its questions)."""
    if spec == "rewrite":
        return [{"prompt": t.format(s=s, t=_SENTENCES[i - 1])}
                for t in _COPY_TEMPLATES for i, s in enumerate(_SENTENCES)]
    if spec == "free":
        return [{"content": q} for q in _FREE]
    if spec == "arith":
        spec = "arith-test"
    return [{"content": t["question"]} for t in load_tasks(spec)]


@dataclass
class SpeculativeOptions:
    """Options of ``bench speculative``; the CLI flags have the same names and defaults."""

    model: str | None = None
    prompts: str = "arith"
    think: str = "on"
    max_tokens: int = 96
    threads: int | None = None
    repeats: int = 3
    limit: int | None = None
    draws: int = 2000  # bootstrap resamples for the interval of the median speedup

    def validate(self) -> None:
        if self.repeats < 1 or self.max_tokens < 2:
            raise ValueError("repeats must be >= 1 and max_tokens >= 2")


def _one(engine: Engine, item: dict, spec: str, opts: SpeculativeOptions):
    # Cold cache for every run (as bench latency does): llama.cpp's logits for a position
    # differ in the last bits with the batch it was computed in, so a reused prefix could
    # flip a near-tie and make the two sides differ for a reason that is not drafting.
    engine.reset_cache()
    common = dict(max_tokens=opts.max_tokens, sampling=SamplingParams(temperature=0.0), think=opts.think,
                  speculative=spec)
    req = (GenerationRequest(prompt=item["prompt"], **common) if "prompt" in item
           else GenerationRequest(messages=[Message("user", item["content"])], **common))
    r = engine.generate(req)
    t = r.timings
    per_token = t.decode_ms / (t.completion_tokens - 1) if t.completion_tokens > 1 else None
    return r.tokens, per_token, t.drafted_tokens, t.accepted_tokens


def _bootstrap_median(values: list[float], draws: int, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def bench_speculative(opts: SpeculativeOptions, progress=lambda _m: None) -> dict:
    """Run the paired comparison and return its JSON-ready record."""
    opts.validate()
    prompts = prompt_set(opts.prompts)[: opts.limit]
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    rows = []
    with Engine(opts.model, EngineConfig(n_ctx=2048, n_threads=opts.threads, queue_size=1)) as engine:
        la_start = fp.load_average()
        for item in prompts[:2]:  # warm-up
            for spec in ("off", "ngram"):
                _one(engine, item, spec, opts)
        for i, item in enumerate(prompts):
            content = item.get("prompt") or item["content"]
            runs = {"off": [], "ngram": []}
            tokens = {}
            drafted = accepted = 0
            for r in range(opts.repeats):
                for spec in (("off", "ngram") if (i + r) % 2 == 0 else ("ngram", "off")):
                    toks, per_token, d, a = _one(engine, item, spec, opts)
                    tokens.setdefault(spec, toks)
                    if toks != tokens[spec]:
                        raise RuntimeError(f"greedy output changed between cold repeats of {content!r}")
                    if per_token is not None:
                        runs[spec].append(per_token)
                    if spec == "ngram":
                        drafted, accepted = d, a
            a, b = tokens["off"], tokens["ngram"]
            first_diff = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b)
                              else min(len(a), len(b)))
            row = {"prompt": content, "tokens": len(a), "identical": a == b, "first_difference": first_diff,
                   "plain_ms_per_token": statistics.median(runs["off"]) if runs["off"] else None,
                   "ngram_ms_per_token": statistics.median(runs["ngram"]) if runs["ngram"] else None,
                   "drafted_tokens": drafted, "accepted_tokens": accepted}
            if row["plain_ms_per_token"] and row["ngram_ms_per_token"]:
                row["speedup"] = row["plain_ms_per_token"] / row["ngram_ms_per_token"]
            rows.append(row)
            progress(f"  {i + 1}/{len(prompts)}: x{row.get('speedup', float('nan')):.2f} "
                     f"({accepted}/{drafted} kept) {'same' if row['identical'] else 'DIFFERENT'}")
        model = engine.info().to_dict()
    speedups = [r["speedup"] for r in rows if "speedup" in r]
    drafted = sum(r["drafted_tokens"] for r in rows)
    summary = {
        "prompts": len(rows), "identical": sum(r["identical"] for r in rows),
        "median_speedup": statistics.median(speedups) if speedups else None,
        "speedup_ci95": _bootstrap_median(speedups, opts.draws) if len(speedups) > 1 else None,
        "geomean_speedup": statistics.geometric_mean(speedups) if speedups else None,
        "plain_ms_per_token_median": statistics.median(r["plain_ms_per_token"] for r in rows
                                                       if r["plain_ms_per_token"]) if rows else None,
        "ngram_ms_per_token_median": statistics.median(r["ngram_ms_per_token"] for r in rows
                                                       if r["ngram_ms_per_token"]) if rows else None,
        "drafted_tokens": drafted, "accepted_tokens": sum(r["accepted_tokens"] for r in rows),
        "acceptance": sum(r["accepted_tokens"] for r in rows) / drafted if drafted else None,
    }
    return {"schema": "thinkling.bench.speculative/1", "started_at": started, "options": asdict(opts),
            "model": model, "machine": fp.machine_fingerprint(),
            "load_average": {"start": la_start, "end": fp.load_average()},
            "wall_s": round(time.perf_counter() - t0, 1), "summary": summary, "rows": rows}


def register(sub) -> None:
    d = SpeculativeOptions()
    p = sub.add_parser("speculative", help="prompt-lookup speculative decoding vs plain decoding, paired",
                       description="Greedy generations with drafting off and on, alternated per prompt: "
                                   "same tokens?, decode ms/token, speedup with a bootstrap interval.")
    p.add_argument("--model", default=d.model)
    p.add_argument("--prompts", default=d.prompts, help="arith, rewrite, free, or a task file (JSONL)")
    p.add_argument("--think", default=d.think, choices=("off", "on", "post", "auto"))
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--repeats", type=int, default=d.repeats, help="paired runs per prompt (order rotated)")
    p.add_argument("--limit", type=int, default=d.limit, help="use only the first N prompts")
    p.add_argument("--json", dest="json_out", default=None, help="write the record here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    import json
    import sys

    from .files import write_text_atomic

    opts = SpeculativeOptions(model=args.model, prompts=args.prompts, think=args.think,
                              max_tokens=args.max_tokens, threads=args.threads, repeats=args.repeats,
                              limit=args.limit)
    rec = bench_speculative(opts, progress=(lambda m: None) if args.quiet
                            else (lambda m: print(m, file=sys.stderr, flush=True)))
    s = rec["summary"]
    ci = s["speedup_ci95"]
    print(f"{rec['model'].get('name')} / {opts.prompts} (think {opts.think}): {s['identical']}/{s['prompts']} "
          f"prompts token-identical; decode {s['plain_ms_per_token_median']:.2f} -> "
          f"{s['ngram_ms_per_token_median']:.2f} ms/token (medians); speedup median x{s['median_speedup']:.2f}"
          + (f" (95% CI x{ci[0]:.2f}..x{ci[1]:.2f})" if ci else "")
          + f", geomean x{s['geomean_speedup']:.2f}; kept {s['accepted_tokens']}/{s['drafted_tokens']} drafted"
          f"; load {rec['load_average']['start']} -> {rec['load_average']['end']}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(rec, indent=1) + "\n")
    return 0 if s["identical"] == s["prompts"] else 1
