"""Ollama's API beside OpenAI's: ``/api/chat``, ``/api/generate``, ``/api/tags``,
``/api/show``, ``/api/ps``, ``/api/version`` on the same server and port.

A sub-application mounted at ``/api``, so its errors have Ollama's shape
(``{"error": "..."}``, same statuses as the OpenAI routes) while the server's
middleware (Host allow-list, key, body limits, request counting) applies as to
every route. Requests map through ``runtime.api`` (``ollama_schemas``) and run
on the same engine, queue, disconnect-cancel and deadlines as the OpenAI routes;
streams are newline-delimited JSON as Ollama sends them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__, models
from ..engine import Engine, Handle
from ..errors import InvalidRequest, ModelNotFound, ThinklingError
from ..generate import join_stream
from ..modelinfo import check_gguf, gguf_info, onnx_info
from ..thinking.formats import detect_format
from ..types import Chunk
from . import errors
from .ollama_responses import ModelFacts, Reply
from .ollama_schemas import OllamaRequest, chat_from_ollama, generate_from_ollama, model_name, parse_body, served_name
from .streaming import EventStream, blocking_with_disconnect, next_chunk

log = logging.getLogger(__name__)
CLIENT_CLOSED = 499  # as in app.py: only ever seen in /metrics


class NDJSONStream(EventStream):
    """Newline-delimited JSON (Ollama's streaming), with EventStream's always-closed iterator."""

    media_type = "application/x-ndjson"


def ndjson(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def error_message(exc: ThinklingError) -> str:
    if isinstance(exc, ModelNotFound):  # Ollama's wording, plus what this server has
        served = f"; this server serves {', '.join(exc.available)}" if exc.available else ""
        return f'model "{exc.model}" not found{served}'
    return exc.message


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _install_errors(app: FastAPI) -> None:
    """Every error of the sub-app in Ollama's shape; statuses as the OpenAI routes'."""

    @app.exception_handler(ThinklingError)
    async def _typed(request: Request, exc: ThinklingError):
        status, _, headers = errors.runtime_error_body(exc)
        return _error(status, error_message(exc), headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405:
            return _error(405, f"method {request.method} is not allowed on {request.url.path}")
        if exc.status_code == 404:
            return _error(404, f"no route for {request.method} {request.url.path}")
        return _error(exc.status_code, exc.detail if isinstance(exc.detail, str) else "request failed")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)  # a bug
        return _error(500, "internal server error")


class Catalog:
    """The facts ``/api/tags`` and ``/api/show`` list, read from the model files'
    headers and manifests (never their weights), cached per file version."""

    def __init__(self, state):
        self.state = state
        self._cache: dict[tuple, ModelFacts] = {}
        self._lock = threading.Lock()

    def _facts(self, name: str, description: str, path: Path) -> ModelFacts:
        engine: Engine | None = self.state.engine
        serving = engine is not None and engine.ref.path == path
        st = path.stat()
        key = (name, str(path), st.st_mtime_ns, st.st_size, serving)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        manifest, entry = models.read_manifest(path)
        template = ""
        if path.suffix == ".onnx":
            info = onnx_info(name, path, manifest, entry)
        else:
            header = check_gguf(path)
            info = gguf_info(name, path, entry, header=header)
            template = str(header.metadata.get("tokenizer.chat_template") or "")
        if serving:
            modes = engine.controller.format.modes  # the served model: what its engine does
        else:
            ref = models.ModelRef(name, path, "onnx" if path.suffix == ".onnx" else "llama_cpp", manifest, entry)
            modes = detect_format(ref, template).modes
        facts = ModelFacts(name, path, info, str((entry or {}).get("sha256") or ""), template, "on" in modes,
                           description)
        with self._lock:
            self._cache[key] = facts
        return facts

    def served(self) -> ModelFacts | None:
        """The loaded model (also when it was opened by path rather than by a registered name)."""
        engine: Engine | None = self.state.engine
        if engine is None:
            return None
        path = engine.ref.path
        if path.is_file() and path.suffix in (".gguf", ".onnx"):
            try:
                return self._facts(engine.model_name, "served", path)
            except Exception as e:
                log.warning("cannot read %s's file for its details: %s", engine.model_name, e)
        return ModelFacts(engine.model_name, path, engine.describe().info, "", "",
                          "on" in engine.controller.format.modes, "served")

    def all(self) -> list[ModelFacts]:
        """Every model this machine has (registered and materialised, or dropped into
        THINKLING_HOME/models) and the served one; a file that cannot be read is left
        out and logged."""
        out = []
        for name, description, path in models.list_refs():
            if path is None or path.suffix not in (".gguf", ".onnx"):
                continue
            try:
                out.append(self._facts(name, description, path))
            except Exception as e:  # one broken file must not break the listing
                log.warning("leaving %s out of /api/tags: %s", name, e)
        served = self.served()
        if served is not None and all(f.name != served.name for f in out):
            out.insert(0, served)
        return out

    def get(self, model: str) -> ModelFacts:
        """One listed model by name (never a path: a client's string does not reach the file system)."""
        name = served_name(model)
        served = self.served()
        if served is not None and served.name == name:
            return served
        listed = self.all()
        for facts in listed:
            if facts.name == name:
                return facts
        raise ModelNotFound(model, [f.tag for f in listed])


def _served_facts(engine: Engine) -> dict:
    d = engine.describe()
    return {"thinkling.loaded": True, "thinkling.n_ctx": d.n_ctx, "thinkling.thinking_family": d.thinking_family,
            "thinkling.think_modes": list(engine.controller.format.modes)}


def ollama_app(state) -> FastAPI:
    """The ``/api`` sub-application over the server's ``ServerState``."""
    app = FastAPI(title="thinkling (Ollama API)", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    _install_errors(app)
    catalog = Catalog(state)

    @app.post("/chat")
    async def chat(request: Request):
        body = parse_body(await request.body())
        return await _generate(request, state, chat_from_ollama(body, state.request_defaults), True, "/api/chat")

    @app.post("/generate")
    async def generate(request: Request):
        body = parse_body(await request.body())
        return await _generate(request, state, generate_from_ollama(body, state.request_defaults), False,
                               "/api/generate")

    @app.get("/tags")
    async def tags():
        listed = await anyio.to_thread.run_sync(catalog.all)
        return {"models": [f.tag_entry() for f in listed]}

    @app.post("/show")
    async def show(request: Request):
        model = model_name(parse_body(await request.body()))
        facts = await anyio.to_thread.run_sync(catalog.get, model)
        engine = state.engine
        served = _served_facts(engine) if engine is not None and engine.model_name == facts.name else None
        return facts.show(served)

    @app.get("/ps")
    async def ps():
        engine = state.ready_engine()
        facts = await anyio.to_thread.run_sync(catalog.get, engine.model_name)
        return {"models": [{**facts.tag_entry(), "expires_at": None, "size_vram": 0,
                            "context_length": engine.describe().n_ctx}]}

    @app.get("/version")
    async def version():
        return {"version": __version__}

    return app


def _check_thinking(engine: Engine, oreq: OllamaRequest) -> None:
    """Ollama refuses ``think: true`` for a model without a thinking capability (400)."""
    if oreq.wants_thinking and "on" not in engine.controller.format.modes:
        raise InvalidRequest(f'"{oreq.model}" does not support thinking', param="think")


async def _generate(request: Request, state, oreq: OllamaRequest, chat: bool, endpoint: str):
    """Both generation routes: submit, then one object or an NDJSON stream."""
    started = time.perf_counter()
    engine = state.ready_engine(oreq.served_name)
    reply = Reply(oreq.model, chat, joined=oreq.request is not None and oreq.request.prompt is not None)
    if oreq.request is None:
        return reply.loaded()
    _check_thinking(engine, oreq)
    handle = engine.submit(oreq.request)  # InvalidRequest / EngineBusy at once
    gone: list[bool] = []

    def client_gone() -> None:
        gone.append(True)
        state.metrics.disconnects.inc()

    if not oreq.stream:
        try:
            result = await blocking_with_disconnect(request, handle, lambda: join_stream(handle, engine.model_name),
                                                    client_gone)
        finally:
            handle.cancel()  # no-op when finished; frees the worker if we were interrupted
        elapsed = time.perf_counter() - started
        state.metrics.observe_generation(endpoint, result.timings, elapsed)
        if gone:
            return Response(status_code=CLIENT_CLOSED)
        if result.finish_reason == "cancelled":  # only shutdown cancels a request whose client is here
            raise errors.NotReady("the server is shutting down")
        return reply.whole(result, elapsed)

    # The first chunk before the headers, so an up-front error is a proper HTTP error.
    try:
        first = await blocking_with_disconnect(request, handle, handle.get, client_gone)
    except BaseException:
        handle.cancel()
        raise
    if gone:
        return Response(status_code=CLIENT_CLOSED)
    return NDJSONStream(_lines(handle, first, reply, state, endpoint, started))


async def _lines(handle: Handle, first: Chunk | None, reply: Reply, state, endpoint: str,
                 started: float) -> AsyncIterator[bytes]:
    chunk, outcome = first, "disconnected"
    try:
        while chunk is not None:
            if chunk.finish_reason is not None:
                elapsed = time.perf_counter() - started
                yield ndjson(reply.final(chunk.finish_reason, chunk.timings, chunk.decision, elapsed,
                                         chunk.text, chunk.reasoning))
                outcome = "finished"
                state.metrics.observe_generation(endpoint, chunk.timings, elapsed)
            elif chunk.text or chunk.reasoning:
                yield ndjson(reply.piece(chunk.text, chunk.reasoning))
            chunk = await next_chunk(handle)
    except Exception as e:  # after the headers: in-band, as Ollama does, then end the stream
        outcome = "error"
        if not isinstance(e, ThinklingError):
            log.error("generation failed mid-stream", exc_info=e)
        yield ndjson({"error": error_message(e) if isinstance(e, ThinklingError) else "internal error"})
    finally:
        handle.cancel()  # a no-op once finished; otherwise the client is gone
        if outcome == "disconnected":
            state.metrics.disconnects.inc()
