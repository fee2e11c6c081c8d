"""``thinkling serve``: flags -> ``ServerSettings`` -> ``serve()``."""

from __future__ import annotations

import argparse

from ..types import THINK_MODES

# flag -> settings field; every flag defaults to "absent" so env and file values survive
_FLAGS = [
    ("--model", "model", str, "registered model name or path (default: gemma-3-270m)"),
    ("--host", "host", str, "address to bind (default 127.0.0.1)"),
    ("--port", "port", int, "TCP port (default 8080)"),
    ("--api-key", "api_key", str, "require this Bearer key (prefer THINKLING_API_KEY: flags show in ps)"),
    ("--queue-size", "queue_size", int, "requests waiting beyond the running one (default 8); past it 429"),
    ("--max-tokens-cap", "max_tokens_cap", int, "clamp every request's max_tokens to this (default 2048)"),
    ("--default-max-tokens", "default_max_tokens", int, "max_tokens when a request gives none (default 256)"),
    ("--default-think", "default_think", str, f"think mode when a request gives none {THINK_MODES}"),
    ("--speculative", "speculative", str, "speculative decoding for requests that do not say: ngram|off "
                                          "(default off; greedy requests only)"),
    ("--request-timeout", "request_timeout_s", float, "seconds per request, queue included (default 300)"),
    ("--ctx", "n_ctx", int, "context window in tokens (default 4096)"),
    ("--threads", "threads", int, "llama.cpp threads (default: physical cores)"),
    ("--thread-policy", "thread_policy", str, "fixed (default) or adaptive: step down when another process takes a core"),
    ("--max-body-bytes", "max_body_bytes", int, "largest request body (default 1 MiB)"),
    ("--body-timeout", "body_timeout_s", float, "seconds to receive a request body, else 408 (default 30)"),
    ("--header-timeout", "header_timeout_s", float, "seconds for a new connection's request head (default 10)"),
    ("--log-level", "log_level", str, "uvicorn log level (default info)"),
]


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the OpenAI-compatible HTTP server",
                       description="Serve a model over an OpenAI-compatible HTTP API. Settings come from "
                                   "flags > THINKLING_* environment variables > --config file > defaults.")
    p.add_argument("--config", default=None, help="settings file (.toml or .json), keys as in ServerSettings")
    for flag, dest, typ, help_text in _FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=argparse.SUPPRESS, help=help_text)
    p.add_argument("--cors-origin", dest="cors_origins", action="append", default=argparse.SUPPRESS,
                   help="allow this browser origin (repeatable; CORS is off by default)")
    p.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=argparse.SUPPRESS,
                   help="accept this Host header (repeatable; default: loopback names on a loopback bind)")
    p.add_argument("--insecure", action="store_true", default=argparse.SUPPRESS,
                   help="allow a non-loopback bind without an API key")
    p.add_argument("--mmap", action="store_true", default=argparse.SUPPRESS,
                   help="map the model file instead of reading it into memory (faster load, shared pages; "
                        "the file must then never be rewritten in place while served)")
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from pydantic import ValidationError

    from .. import models
    from ..cli import fail
    from ..modelinfo import check_gguf
    from .app import serve
    from .settings import load_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("func", "command", "verbose", "config")}
    try:
        settings = load_settings(args.config, **flags)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'settings'}: {err['msg']}" for err in e.errors())
        return fail(f"invalid server settings: {problems}", 2)
    except ValueError as e:
        return fail(str(e), 2)
    problem = settings.bind_problem()
    if problem:
        return fail(problem, 2)
    # Fail fast on a wrong model name or a broken file, before binding the port;
    # the load itself runs in the background so /health can report it.
    ref = models.resolve(settings.model)
    if ref.backend == "llama_cpp":
        check_gguf(ref.path)
    try:
        serve(settings)
    except KeyboardInterrupt:  # Ctrl-C is how a server stops; uvicorn re-raises it after shutdown
        pass
    return 0
