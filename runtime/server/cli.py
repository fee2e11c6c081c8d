"""``thinkling serve``: flags -> ``ServerSettings`` -> ``serve()``."""

from __future__ import annotations

import argparse
from typing import Literal, get_args, get_origin

# Flags are generated from ServerSettings' fields (one description, one default);
# these fields take a shorter flag than ``--<field-name>``.
FLAG_NAMES = {"n_ctx": "--ctx", "request_timeout_s": "--request-timeout", "cors_origins": "--cors-origin",
              "allowed_hosts": "--allowed-host", "graceful_shutdown_s": "--graceful-shutdown",
              "body_timeout_s": "--body-timeout", "header_timeout_s": "--header-timeout", "keep_alive_s": "--keep-alive"}
EXTRA_HELP = {"api_key": " (prefer THINKLING_API_KEY: flags show in ps)",
              "cors_origins": " (repeatable)", "allowed_hosts": " (repeatable)"}


def _flag_kwargs(name: str, info) -> dict:
    """argparse keywords for one settings field; every flag defaults to "absent"
    so environment and file values survive."""
    ann = info.annotation
    args = [a for a in get_args(ann) if a is not type(None)]
    if get_origin(ann) is not None and get_origin(ann) is not Literal and len(args) == 1:
        ann, args = args[0], list(get_args(args[0]))  # X | None -> X
    default = info.get_default(call_default_factory=True)
    shown = "" if default in (None, [], False) else f" (default {default})"
    kw = dict(dest=name, default=argparse.SUPPRESS, help=(info.description or "") + EXTRA_HELP.get(name, "") + shown)
    if ann is bool:
        return {**kw, "action": "store_true"}
    if get_origin(ann) is list:
        return {**kw, "action": "append"}
    if get_origin(ann) is Literal:
        return {**kw, "choices": list(get_args(ann))}
    return {**kw, "type": ann if ann in (int, float) else str}


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the OpenAI-compatible HTTP server",
                       description="Serve a model over an OpenAI-compatible HTTP API. Settings come from "
                                   "flags > THINKLING_* environment variables > --config file > defaults.")
    p.add_argument("--config", default=None, help="settings file (.toml or .json), keys as in ServerSettings")
    p.set_defaults(func=run_serve)
    try:
        from .settings import ServerSettings
    except ModuleNotFoundError:  # no serve extra: run_serve's import then names it
        p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        return
    for name, info in ServerSettings.model_fields.items():
        p.add_argument(FLAG_NAMES.get(name, "--" + name.replace("_", "-")), **_flag_kwargs(name, info))


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
