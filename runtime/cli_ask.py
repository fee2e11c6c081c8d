"""``thinkling ask`` and ``thinkling models``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from . import models
from .api.limits import THREAD_POLICIES
from .engine import Engine, EngineConfig
from .errors import InvalidRequest
from .modelinfo import check_gguf, gguf_info, onnx_info
from .speculative import SPECULATIVE_MODES
from .structured import response_format_from
from .types import GenerationRequest, Message, SamplingParams, THINK_MODES


def register(sub) -> None:
    # defaults are the library's: what a request or an engine gets when it does not say
    sampling, request, engine = SamplingParams(), GenerationRequest(prompt=""), EngineConfig()
    p = sub.add_parser("ask", help="ask a model one question; streams the answer, then timings")
    p.add_argument("prompt")
    p.add_argument("--model", default=None, help="registered name or path (default: gemma-3-270m)")
    p.add_argument("--max-tokens", type=int, default=request.max_tokens)
    p.add_argument("--temperature", type=float, default=sampling.temperature)
    p.add_argument("--top-p", type=float, default=sampling.top_p)
    p.add_argument("--top-k", type=int, default=sampling.top_k)
    p.add_argument("--seed", type=int, default=sampling.seed)
    p.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--chat", dest="chat", action="store_true", default=True,
                   help="render as a chat message (default)")
    g.add_argument("--raw", dest="chat", action="store_false", help="use the prompt as raw completion text")
    p.add_argument("--think", choices=THINK_MODES, default=request.think)
    p.add_argument("--budget", type=int, default=None, help="reasoning budget in tokens")
    p.add_argument("--deadline-ms", type=float, default=None)
    p.add_argument("--threads", type=int, default=engine.n_threads)
    p.add_argument("--ctx", type=int, default=engine.n_ctx)
    p.add_argument("--thread-policy", choices=THREAD_POLICIES, default=engine.thread_policy,
                   help="adaptive: 1..threads by measured decode speed (steps down when a core is busy); "
                        "fixed: always --threads")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming")
    f = p.add_mutually_exclusive_group()
    f.add_argument("--json-schema", metavar="FILE", default=None,
                   help="the answer is JSON valid against this JSON Schema (the reasoning stays free)")
    f.add_argument("--json-object", action="store_true", help="the answer is a JSON object")
    p.add_argument("--speculative", choices=SPECULATIVE_MODES, default=engine.speculative,
                   help="ngram: prompt-lookup speculative decoding (greedy only; the output is unchanged)")
    p.set_defaults(func=run_ask)

    m = sub.add_parser("models", help="list available models with metadata")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=run_models)


def _response_format(args):
    if getattr(args, "json_object", False):
        return response_format_from({"type": "json_object"})
    path = getattr(args, "json_schema", None)
    if path is None:
        return None
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidRequest(f"cannot read {path}: {e.strerror or e}", param="--json-schema") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidRequest(f"{path} is not JSON: {e}", param="--json-schema") from None
    return response_format_from({"type": "json_schema", "json_schema": {"name": Path(path).stem, "schema": schema}},
                                param="--json-schema")


def request_from_args(args) -> GenerationRequest:
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              seed=args.seed)
    common = dict(max_tokens=args.max_tokens, sampling=sampling, stop=args.stop, think=args.think,
                  reasoning_budget=args.budget,
                  deadline_s=args.deadline_ms / 1000 if args.deadline_ms else None,
                  speculative=args.speculative, response_format=_response_format(args))
    if args.chat:
        return GenerationRequest(messages=[Message("user", args.prompt)], **common)
    return GenerationRequest(prompt=args.prompt, **common)


def _threads(state: dict) -> str:
    """``2`` (fixed), or ``adaptive:1`` with the prefill count where it differs (mid-trial)."""
    if state["policy"] != "adaptive":
        return str(state["threads"])
    extra = f"/prefill {state['batch_threads']}" if state["batch_threads"] != state["threads"] else ""
    return f"adaptive:{state['threads']}{extra}"


def run_ask(args) -> int:
    config = EngineConfig(n_ctx=args.ctx, n_threads=args.threads, queue_size=1, thread_policy=args.thread_policy)
    request = request_from_args(args)
    with Engine(args.model, config) as engine:
        if args.json:
            result = engine.generate(request)
            print(json.dumps(result.to_dict(), ensure_ascii=False))
            return 0
        last = None
        in_reasoning = False
        for chunk in engine.stream(request):
            if chunk.reasoning:
                if not in_reasoning:
                    sys.stderr.write("[reasoning] ")
                    in_reasoning = True
                sys.stderr.write(chunk.reasoning)
                sys.stderr.flush()
            if chunk.text:
                if in_reasoning:
                    sys.stderr.write("\n")
                    in_reasoning = False
                sys.stdout.write(chunk.text)
                sys.stdout.flush()
            last = chunk
        sys.stdout.write("\n")
        t = last.timings
        print(f"[{engine.model_name}] finish={last.finish_reason} load={t.load_ms:.0f}ms "
              f"prompt={t.prompt_tokens}tok/{t.prompt_ms:.0f}ms ttft={t.ttft_ms:.0f}ms "
              f"out={t.completion_tokens}tok decode={t.decode_tok_s:.1f}tok/s total={t.total_ms:.0f}ms "
              f"mode={last.decision.mode if last.decision else None} threads={_threads(engine.threads())}"
              + (f" drafted={t.drafted_tokens} accepted={t.accepted_tokens}" if t.drafted_tokens else ""),
              file=sys.stderr)
    return 0


def run_models(args) -> int:
    rows = []
    for name, desc, path in models.list_refs():
        row = {"name": name, "description": desc, "path": str(path) if path else None}
        if path is not None and path.suffix in (".gguf", ".onnx"):
            try:
                manifest, entry = models.read_manifest(path)
                info = gguf_info(name, path, entry, header=check_gguf(path)) if path.suffix == ".gguf" \
                    else onnx_info(name, path, manifest, entry)
                row.update({k: v for k, v in info.to_dict().items() if k != "name"})
            except Exception as e:  # listing must survive one bad file
                row["error"] = str(e)
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max([22] + [len(r["name"]) for r in rows])
    print(f"{'NAME':<{width}} {'ARCH':<10} {'PARAMS':>9} {'QUANT':<10} {'SIZE':>9}  DESCRIPTION")
    for r in rows:
        params = f"{r['parameters'] / 1e6:.1f}M" if r.get("parameters") else "-"
        size = f"{r['size_bytes'] / 2**20:.1f}MiB" if r.get("size_bytes") else "-"
        desc = r["description"] + ("" if r["path"] else " [not materialised]") + (
            f" [error: {r['error']}]" if r.get("error") else "")
        print(f"{r['name']:<{width}} {str(r.get('architecture') or '-'):<10} {params:>9} "
              f"{str(r.get('quantization') or '-'):<10} {size:>9}  {desc}")
    return 0
