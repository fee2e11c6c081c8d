"""The FastAPI application: OpenAI-compatible routes over one ``Engine``.

``create_app(settings)`` loads the model in a background thread at startup, so
``/health`` answers 503 while it loads; ``create_app(settings, engine)`` serves
an engine the caller already loaded (and keeps owning).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response

from .. import __version__
from ..api import (ChatEvents, CompletionEvents, ReasoningTally, RequestDefaults, chat_request, chat_response,
                   completion_request, completion_response)
from ..engine import Engine, EngineConfig, Handle
from ..errors import ModelNotFound, ThinklingError
from ..generate import join_stream
from ..types import Chunk
from . import errors
from .metrics import CONTENT_TYPE, Metrics
from .middleware import PLAYGROUND, CountRequests, Guard
from .ollama import ollama_app
from .schemas import ChatCompletionRequest, CompletionRequest, ErrorResponse
from .settings import ServerSettings
from .streaming import EventStream, blocking_with_disconnect, next_chunk, sse, stream_error_event

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's "client closed request": only ever seen in /metrics
_ERRORS = {s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 415, 429, 503)}


def default_loader(settings: ServerSettings) -> Engine:
    return Engine(settings.model, EngineConfig(n_ctx=settings.n_ctx, n_threads=settings.threads,
                                               n_batch=settings.n_batch, queue_size=settings.queue_size,
                                               speculative=settings.speculative,
                                               thread_policy=settings.thread_policy, use_mmap=settings.mmap))


@dataclass
class ServerState:
    """What the routes share, kept on ``app.state.thinkling``."""

    settings: ServerSettings
    engine: Engine | None = None
    owns_engine: bool = True
    load_error: BaseException | None = None
    loaded_at: int = 0
    served_names: frozenset[str] = frozenset()
    model_card: dict = field(default_factory=dict)
    request_defaults: RequestDefaults = field(init=False)
    metrics: Metrics = field(init=False)
    _closing: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(lambda: self.engine)
        self.request_defaults = self.settings.request_defaults()

    def set_engine(self, engine: Engine) -> None:
        names = {engine.model_name}
        if self.settings.model:
            names.add(self.settings.model)
        self.served_names = frozenset(names)
        self.loaded_at = int(time.time())
        self.model_card = _model_card(engine, self.loaded_at)
        self.engine = engine

    def load(self, loader: Callable[[ServerSettings], Engine]) -> None:
        try:
            t0 = time.perf_counter()
            self.set_engine(loader(self.settings))
            log.info("model %s loaded in %.0f ms", self.engine.model_name, (time.perf_counter() - t0) * 1000)
        except Exception as e:  # reported by /health and every route
            log.error("model failed to load: %s", e, exc_info=not isinstance(e, ThinklingError))
            self.load_error = e

    def ready_engine(self, model: str | None = None) -> Engine:
        """The loaded engine; ``NotReady`` while loading, ``ModelNotFound`` for
        a model name this server does not serve (never silently the default)."""
        if self.engine is None:
            if self.load_error is not None:
                raise errors.NotReady(f"the model failed to load: {self.load_error}")
            raise errors.NotReady("the model is still loading; retry shortly")
        if model is not None and model not in self.served_names:
            raise ModelNotFound(model, sorted(self.served_names))
        return self.engine

    def close(self) -> None:
        """Close the engine (once; a second caller waits until the first is done)."""
        with self._closing:
            if self.engine is not None and self.owns_engine:
                self.engine.close()


def create_app(settings: ServerSettings, engine: Engine | None = None, *,
               loader: Callable[[ServerSettings], Engine] = default_loader) -> FastAPI:
    """Build the app. Without ``engine``, ``loader(settings)`` runs in a
    background thread at startup (tests pass a slow loader to see the 503)."""
    state = ServerState(settings, owns_engine=engine is None)
    if engine is not None:
        state.set_engine(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.engine is None:
            threading.Thread(target=state.load, args=(loader,), name="thinkling-load", daemon=True).start()
        yield
        await anyio.to_thread.run_sync(state.close)  # joins the worker: not on the loop

    app = FastAPI(title="thinkling", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible local endpoint with thinking controls.")
    app.state.thinkling = state
    errors.install(app)
    _routes(app, state)
    app.mount("/api", ollama_app(state))  # Ollama's API, its own error shape (runtime/server/ollama.py)
    app.add_middleware(Guard, api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                       allowed_hosts=settings.host_allowlist(), max_body=settings.max_body_bytes,
                       body_timeout_s=settings.body_timeout_s)
    app.add_middleware(CountRequests, metrics=state.metrics)
    if settings.cors_origins:  # off by default
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app


def _routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/v1/chat/completions", responses=_ERRORS, summary="Chat completion (OpenAI schema + thinking)")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        return await _generate(request, state, body, "/v1/chat/completions")

    @app.post("/v1/completions", responses=_ERRORS, summary="Text completion (OpenAI schema)")
    async def completions(body: CompletionRequest, request: Request):
        return await _generate(request, state, body, "/v1/completions")

    @app.get("/v1/models", responses=_ERRORS, summary="The served model")
    async def list_models():
        state.ready_engine()
        return {"object": "list", "data": [state.model_card]}

    @app.get("/v1/models/{model}", responses=_ERRORS, summary="One model by id")
    async def get_model(model: str):
        state.ready_engine(model)
        return state.model_card

    @app.get("/health", responses={503: {"model": ErrorResponse}}, summary="200 when ready, 503 while loading")
    async def health():
        if state.engine is None:
            failed = state.load_error is not None
            message = f"model failed to load: {state.load_error}" if failed else "model is loading"
            body = errors.error_body(message, 503, code="model_load_failed" if failed else "model_loading")
            return JSONResponse({"status": "error" if failed else "loading", **body}, status_code=503,
                                headers={"Retry-After": "1"})
        return {"status": "ok", "model": state.engine.model_name, "queue_depth": state.engine.queue_depth,
                "threads": state.engine.threads()}

    @app.get("/", include_in_schema=False)
    async def playground():
        return _static("index.html")

    @app.get("/playground/{name}", include_in_schema=False)
    async def playground_file(name: str):
        return _static(name)

    @app.get("/metrics", summary="Prometheus text format")
    async def metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)


STATIC = Path(__file__).with_name("static")
# The page loads nothing from elsewhere and talks only to this server.
_PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                 "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


def _static(name: str) -> Response:
    if name not in PLAYGROUND:
        return JSONResponse(errors.error_body(f"no such file: {name}", 404, code="not_found"), status_code=404)
    return FileResponse(STATIC / name, media_type=PLAYGROUND[name], headers=_PAGE_HEADERS)


def _model_card(engine: Engine, created: int) -> dict:
    d = engine.describe()
    info = d.info
    return {"id": d.model, "object": "model", "created": created, "owned_by": "thinkling",
            "meta": {"architecture": info.architecture, "parameters": info.parameters,
                     "quantization": info.quantization, "size_bytes": info.size_bytes,
                     "n_ctx": d.n_ctx, "n_ctx_train": info.context_length,
                     "thinking_family": d.thinking_family}}


async def _generate(request: Request, state: ServerState, body, endpoint: str):
    """Shared by both completion routes: validate, submit, answer or stream."""
    started = time.perf_counter()
    engine = state.ready_engine(body.model)
    chat = isinstance(body, ChatCompletionRequest)
    # pydantic has checked types and bounds (its messages, OpenAPI); the runtime's
    # one mapping turns the body into a request, as for every edge
    gen_request = (chat_request if chat else completion_request)(body.model_dump(), state.request_defaults)
    handle = engine.submit(gen_request)  # InvalidRequest / EngineBusy at once
    gone: list[bool] = []

    def client_gone() -> None:
        gone.append(True)
        state.metrics.disconnects.inc()

    if not body.stream:
        tally = ReasoningTally()
        try:
            result = await blocking_with_disconnect(
                request, handle, lambda: join_stream(map(tally.see, handle), engine.model_name), client_gone)
        finally:
            handle.cancel()  # no-op when finished; frees the worker if we were interrupted
        state.metrics.observe_generation(endpoint, result.timings, time.perf_counter() - started)
        if gone:
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it; labels the metric
        if result.finish_reason == "cancelled":  # only shutdown cancels a request whose client is here
            raise errors.NotReady("the server is shutting down")
        return chat_response(result, tally.tokens) if chat else completion_response(result)

    # Streaming: wait for the first chunk before sending headers, so an error the
    # worker raises up front (prompt too long...) is a proper HTTP error.
    try:
        first = await blocking_with_disconnect(request, handle, handle.get, client_gone)
    except BaseException:
        handle.cancel()
        raise
    if gone:
        return Response(status_code=CLIENT_CLOSED)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = (ChatEvents if chat else CompletionEvents)(engine.model_name, include_usage)
    return EventStream(_event_stream(handle, first, events, state, endpoint, started))


async def _event_stream(handle: Handle, first: Chunk | None, events, state: ServerState, endpoint: str,
                        started: float) -> AsyncIterator[bytes]:
    chunk, outcome = first, "disconnected"
    try:
        while chunk is not None:
            for payload in events.events(chunk):
                yield sse(payload)
            if chunk.finish_reason is not None:
                outcome = "finished"
                state.metrics.observe_generation(endpoint, chunk.timings, time.perf_counter() - started)
            chunk = await next_chunk(handle)
        yield sse("[DONE]")
    except Exception as e:  # after the headers: report in-band, then end the stream
        outcome = "error"
        yield stream_error_event(e)
    finally:
        handle.cancel()  # a no-op once finished; otherwise the client is gone
        if outcome == "disconnected":
            state.metrics.disconnects.inc()


def serve(settings: ServerSettings) -> None:
    """Run the server until interrupted (blocking). Callers check
    ``settings.bind_problem()`` first; ``thinkling serve`` does."""
    import uvicorn

    app = create_app(settings)
    state: ServerState = app.state.thinkling

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            # uvicorn waits for open requests before the lifespan shutdown runs;
            # closing the engine first ends them within a token (queued ones at
            # once) instead of letting them run out the graceful timeout.
            if not self.should_exit:
                threading.Thread(target=state.close, name="thinkling-drain", daemon=True).start()
            super().handle_exit(sig, frame)

    # Connection limits (docs/server.md "Limits"): every stage of a connection is bounded in
    # time: its first request head (header_timeout_s), its body (body_timeout_s, in Guard),
    # the idle wait between keep-alive requests (keep_alive_s); heads are capped at h11's
    # 16 KiB. limit_concurrency stays off: it counts idle connections too, so a pile of
    # them would turn into 503s for every other client instead of being closed.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=settings.graceful_shutdown_s, server_header=False,
                            http=head_timeout_protocol(settings.header_timeout_s),
                            timeout_keep_alive=settings.keep_alive_s, h11_max_incomplete_event_size=16 * 1024)
    Server(config).run()


def head_timeout_protocol(timeout_s: float):
    """uvicorn's h11 protocol, plus a deadline for a new connection's first request head.

    uvicorn closes idle keep-alive connections, but a connection that never completes
    its first request line and headers (idle, or sending a byte at a time) is kept
    forever, holding a file descriptor; no uvicorn setting bounds it, hence this."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutProtocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._head_timer = self.loop.call_later(timeout_s, self._head_timeout)

        def _head_timeout(self) -> None:
            if self.cycle is None and not self.transport.is_closing():  # no request head yet
                log.debug("closing a connection that sent no request head in %.0f s", timeout_s)
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self._head_timer.cancel()
            super().connection_lost(exc)

    return HeadTimeoutProtocol
