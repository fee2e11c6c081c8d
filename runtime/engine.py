"""The engine: owns one loaded model and serves requests one at a time.

One worker thread owns the backend (native handles are never touched from two
threads); requests wait in a bounded queue (``EngineBusy`` past it);
cancellation and deadlines are checked between tokens. ``close()`` stops the
worker and frees the native model deterministically.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from . import models
from .api.limits import (DEFAULT_THREAD_POLICY, LIMITS, MAX_DEADLINE_MS, SAMPLING, THREAD_POLICIES, Limit, bad,
                         check_load)
from .backends import BackendOptions, open_backend
from .backends.base import Backend
from .errors import EngineBusy, EngineClosed, InvalidRequest
from .generate import join_stream
from .ggufheader import GGUFHeader
from .hardware import physical_cores
from .modelinfo import ModelInfo, check_gguf, gguf_info
from .models import ModelRef
from .speculative import SPECULATIVE_MODES
from .structured import grammar_for
from .thinking import ThinkingController
from .thinking.profile import Speed, ThinkingProfile
from .types import THINK_MODES, Chunk, GenerationRequest, GenerationResult, ResponseFormat, Timings

log = logging.getLogger(__name__)
_DONE = object()


DEADLINE_S = Limit("num", 0, MAX_DEADLINE_MS / 1000, low_open=True)  # the table's deadline_ms, in seconds


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings. ``n_threads=None`` means the machine's physical cores."""

    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    queue_size: int = 8
    cpu_affinity: tuple[int, ...] | None = None
    speculative: str = "off"  # default for requests that do not say: "ngram" or "off" (runtime.speculative)
    # "adaptive": between 1 and n_threads by measured decode speed (runtime.threads: steps down
    # when another process takes a core); "fixed": always n_threads. THREAD_POLICIES.
    thread_policy: str = DEFAULT_THREAD_POLICY
    use_mmap: bool = True  # False: read the weights into memory (immune to the file changing)


def validate_request(req: GenerationRequest) -> None:
    """Reject requests no layer could serve, against the same limits table the
    edges use (``runtime.api.limits``); edges validate too, but the engine never
    trusts them (library callers reach it directly)."""
    if (req.prompt is None) == (req.messages is None):
        raise InvalidRequest("exactly one of prompt or messages must be given", param="prompt")
    if req.prompt is not None and not isinstance(req.prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    LIMITS["max_tokens"].check("max_tokens", req.max_tokens)
    for name in SAMPLING:
        LIMITS[name].check(name, getattr(req.sampling, name))
    if req.reasoning_budget is not None:
        LIMITS["reasoning_budget"].check("reasoning_budget", req.reasoning_budget)
    if req.deadline_s is not None:
        DEADLINE_S.check("deadline_s", req.deadline_s)
    if req.think not in THINK_MODES:
        raise bad("think", f"must be one of {THINK_MODES}")
    if req.speculative is not None and req.speculative not in SPECULATIVE_MODES:
        raise bad("speculative", f"must be one of {SPECULATIVE_MODES}")
    if req.response_format is not None:
        if not isinstance(req.response_format, ResponseFormat):
            raise InvalidRequest("response_format must be a ResponseFormat", param="response_format")
        grammar_for(req.response_format)  # a schema the grammar cannot enforce is refused before queueing


class Handle:
    """A submitted request: iterate it for chunks, ``cancel()`` to stop it.

    Iteration re-raises a typed error the worker hit (e.g. ContextLengthExceeded)
    before any chunk was produced.
    """

    def __init__(self, request: GenerationRequest):
        self.request = request
        self._cancel = threading.Event()
        self._out: queue.Queue = queue.Queue()
        self.started = threading.Event()
        self.tokens_emitted = 0  # written by the worker; lets callers see how far it got

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def stop_reason(self) -> str | None:
        if self._cancel.is_set():
            return "cancelled"
        r = self.request
        if r.deadline_s is not None and time.perf_counter() - r.submitted_at > r.deadline_s:
            return "deadline"
        return None

    def get(self, timeout: float | None = None):
        """Next chunk, or None at the end; raises the worker's error; ``queue.Empty`` on timeout."""
        item = self._out.get(timeout=timeout)
        if item is _DONE:
            self._out.put(_DONE)  # keep returning None on later calls
            return None
        if isinstance(item, BaseException):
            self._out.put(_DONE)
            raise item
        return item

    def _end_unstarted(self, reason: str, queue_ms: float = 0.0) -> None:
        """Finish a request that never reached the model (cancelled, deadline, shutdown)."""
        self._out.put(Chunk(finish_reason=reason, timings=Timings(queue_ms=queue_ms)))
        self._out.put(_DONE)

    def __iter__(self) -> Iterator[Chunk]:
        while (chunk := self.get()) is not None:
            yield chunk


def _check_config(config: EngineConfig) -> None:
    for name in ("n_ctx", "n_batch", "queue_size"):
        check_load(name, getattr(config, name))
    if config.n_threads is not None:
        check_load("n_threads", config.n_threads)
    if config.speculative not in SPECULATIVE_MODES:
        raise InvalidRequest(f"speculative must be one of {SPECULATIVE_MODES}", param="speculative")
    if config.thread_policy not in THREAD_POLICIES:
        raise InvalidRequest(f"thread_policy must be one of {THREAD_POLICIES}", param="thread_policy")


@dataclass(frozen=True)
class EngineDescription:
    """What the edges show about a loaded engine (model card, health, bridge info)."""

    model: str
    info: ModelInfo
    n_ctx: int
    n_threads: int | None  # the backend's thread count (None: it does not say)
    thinking_family: str
    load_ms: float
    profile: ThinkingProfile | None  # the adaptive-thinking profile in force
    speed: Speed  # measured speed of this model here (a copy)


class _Job:
    """A call to run on the worker thread (it owns the backend), with its outcome."""

    cancelled = False  # never dropped as a cancelled request

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # re-raised on the caller's thread
            self.error = e
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class Engine:
    """Load a model once and serve generation requests through one worker.

    >>> with Engine("gemma-3-270m") as eng:
    ...     print(eng.generate(GenerationRequest(prompt="The capital of France is")).text)
    """

    def __init__(self, model: str | None = None, config: EngineConfig | None = None):
        config = config or EngineConfig()
        _check_config(config)
        ref = models.resolve(model)
        header = check_gguf(ref.path) if ref.backend == "llama_cpp" else None
        t0 = time.perf_counter()
        opts = BackendOptions(n_ctx=config.n_ctx, n_threads=config.n_threads or physical_cores(),
                              n_batch=config.n_batch, cpu_affinity=config.cpu_affinity,
                              adaptive_threads=config.thread_policy == "adaptive",
                              use_mmap=config.use_mmap)
        backend = open_backend(ref.backend, str(ref.path), opts)
        self._start(backend, ref, config, load_ms=(time.perf_counter() - t0) * 1000, header=header)

    @classmethod
    def from_backend(cls, backend: Backend, ref: ModelRef, config: EngineConfig | None = None, *,
                     profile: ThinkingProfile | None = None) -> "Engine":
        """An engine over a backend the caller opened (tests: the scripted backend).
        The engine owns it from here: ``close()`` closes it. ``profile`` None: the one
        next to ``ref.path``, if any."""
        config = config or EngineConfig()
        _check_config(config)
        engine = cls.__new__(cls)
        engine._start(backend, ref, config, load_ms=0.0, header=None, profile=profile)
        return engine

    def _start(self, backend: Backend, ref: ModelRef, config: EngineConfig, *, load_ms: float,
               header: GGUFHeader | None, profile: ThinkingProfile | None = None) -> None:
        self.config = config
        self.ref = ref
        self._header = header
        self.backend = backend
        self.load_ms = load_ms
        self._pending_load_ms = self.load_ms  # reported on the first request
        self.controller = ThinkingController(self.backend, self.ref, profile)
        self._queue: queue.Queue = queue.Queue(maxsize=self.config.queue_size)
        self._closed = False
        self._busy = threading.Event()
        self._current: Handle | None = None
        # Outcome counters: updated by the worker and by submitting threads
        # (_drop_cancelled), read by /metrics scrapes; every access holds the lock.
        self._stats_lock = threading.Lock()
        self._stats = {"completed": 0, "cancelled": 0, "errors": 0}
        self._worker = threading.Thread(target=self._run, name="thinkling-engine", daemon=True)
        self._worker.start()

    @property
    def model_name(self) -> str:
        return self.ref.name

    def info(self) -> ModelInfo:
        if self.ref.backend == "llama_cpp":
            return gguf_info(self.ref.name, self.ref.path, self.ref.file_entry, header=self._header)
        path = self.ref.path  # an ONNX model, or a backend a caller opened (from_backend)
        return ModelInfo(name=self.ref.name, path=str(path), format=self.ref.backend,
                         size_bytes=path.stat().st_size if path.is_file() else 0)

    def threads(self) -> dict:
        """The thread policy in force: ``fixed`` with its count, or the governor's state.
        Adaptive asked of a backend that cannot move its count (one thread, onnxruntime's
        fixed pool) runs fixed and says so (``requested``)."""
        if self.backend.governor is not None:
            return self.backend.governor.describe()
        fixed = {"policy": "fixed", "threads": self._n_threads()}
        return fixed if self.config.thread_policy == "fixed" else {**fixed, "requested": self.config.thread_policy}

    def _n_threads(self) -> int | None:
        """The backend's thread count, or the configured one where the backend does not say."""
        return self.backend.n_threads if self.backend.n_threads is not None else self.config.n_threads

    def describe(self) -> EngineDescription:
        """What the edges show about this engine (the model card, health, the bridge's info)."""
        ctl = self.controller
        return EngineDescription(model=self.model_name, info=self.info(), n_ctx=self.backend.n_ctx,
                                 n_threads=self._n_threads(),
                                 thinking_family=ctl.format.family, load_ms=self.load_ms, profile=ctl.profile,
                                 speed=Speed(**vars(ctl.speed)))

    # --- calls that run on the worker (the one owner of the backend) -------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the worker between requests and return its result."""
        if threading.current_thread() is self._worker:  # already on the worker (a chunk consumer)
            return fn()
        if self._closed:
            raise EngineClosed()
        job = _Job(fn)
        self._queue.put(job)  # waits for a slot: a control call is never refused as busy
        while not job.done.wait(0.1):
            if not self._worker.is_alive():  # closed after the job was queued
                raise EngineClosed()
        if job.error is not None:
            raise job.error
        return job.result

    def reset_cache(self) -> None:
        """Empty the KV cache: the next request starts cold (no reused prefix)."""
        self._call(lambda: self.backend.truncate(0))

    def cache_tokens(self) -> list[int]:
        """A copy of the tokens in the KV cache (after a request: its prompt, then its output)."""
        return self._call(lambda: list(self.backend.kv_tokens))

    def set_profile(self, profile: ThinkingProfile | None) -> None:
        """Replace the adaptive-thinking profile (None: ``auto`` without one, as for
        calibration); requests queued before this call run with the old one."""
        self._call(lambda: self.controller.set_profile(profile))

    @property
    def stats(self) -> dict[str, int]:
        """A consistent snapshot (a copy) of the outcome counters:
        ``completed``, ``cancelled``, ``errors``."""
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, outcome: str) -> None:
        with self._stats_lock:
            self._stats[outcome] += 1

    @property
    def queue_depth(self) -> int:
        """Requests waiting plus the one running."""
        return self._queue.qsize() + (1 if self._busy.is_set() else 0)

    def submit(self, request: GenerationRequest) -> Handle:
        """Queue ``request``; raises ``InvalidRequest`` or ``EngineBusy`` at once."""
        if self._closed:
            raise EngineClosed()
        validate_request(request)
        # a copy: the caller's request is never written (it may be resubmitted or shared)
        request = replace(request, submitted_at=time.perf_counter(),
                          speculative=self.config.speculative if request.speculative is None else request.speculative)
        handle = Handle(request)
        try:
            self._queue.put_nowait(handle)
        except queue.Full:
            # Waiting requests whose caller gave up (client gone) must not hold slots.
            if not self._drop_cancelled():
                raise EngineBusy(self.config.queue_size) from None
            try:
                self._queue.put_nowait(handle)
            except queue.Full:
                raise EngineBusy(self.config.queue_size) from None
        return handle

    def _drop_cancelled(self) -> int:
        """Remove cancelled requests from the waiting queue, finishing them as
        cancelled; returns how many slots were freed."""
        with self._queue.mutex:  # Queue's own lock guards its deque
            waiting = list(self._queue.queue)
            dropped = [h for h in waiting if h is not None and h.cancelled]
            if dropped:
                self._queue.queue.clear()
                self._queue.queue.extend(h for h in waiting if h is None or not h.cancelled)
                self._queue.not_full.notify(len(dropped))
        for h in dropped:
            self._count("cancelled")
            h._end_unstarted("cancelled")
        return len(dropped)

    def stream(self, request: GenerationRequest) -> Iterator[Chunk]:
        """Submit and yield chunks; closing the iterator early cancels the request."""
        handle = self.submit(request)
        try:
            yield from handle
        finally:
            handle.cancel()

    def generate(self, request: GenerationRequest) -> GenerationResult:
        """Blocking call: the joined stream."""
        return join_stream(self.stream(request), self.model_name)

    def _serve(self, handle: Handle) -> None:
        req = handle.request
        queue_ms = (time.perf_counter() - req.submitted_at) * 1000
        early = "cancelled" if self._closed else handle.stop_reason()
        if early:
            self._count("cancelled" if early == "cancelled" else "completed")
            handle._out.put(Chunk(finish_reason=early, timings=Timings(queue_ms=queue_ms)))
            return
        for chunk in self.controller.stream(req, should_stop=handle.stop_reason):
            if chunk.timings is not None:  # the engine adds its own timings to the loop's
                chunk = replace(chunk, timings=replace(chunk.timings, queue_ms=queue_ms,
                                                       load_ms=self._pending_load_ms))
                self._pending_load_ms = 0.0
                self._count("cancelled" if chunk.finish_reason == "cancelled" else "completed")
            handle.tokens_emitted += len(chunk.token_ids)
            handle._out.put(chunk)

    def _run(self) -> None:
        if self.config.cpu_affinity and hasattr(os, "sched_setaffinity"):
            # pid 0 = this thread on Linux: pins the worker (and the compute
            # threads llama.cpp/onnxruntime start from it), not the caller.
            os.sched_setaffinity(0, set(self.config.cpu_affinity))
        while True:
            handle = self._queue.get()
            if handle is None:
                return
            if isinstance(handle, _Job):
                handle.run()
                continue
            self._busy.set()
            self._current = handle
            handle.started.set()
            try:
                self._serve(handle)
            except Exception as e:  # delivered to the caller, the worker lives on
                self._count("errors")
                if not hasattr(e, "code"):
                    log.exception("generation failed")
                handle._out.put(e)
            finally:
                handle._out.put(_DONE)
                self._current = None
                self._busy.clear()

    def close(self) -> None:
        """Stop the worker (cancelling queued requests) and free the model."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                h = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(h, _Job):
                h.fail(EngineClosed())
            elif h is not None:
                h.cancel()
                h._end_unstarted("cancelled")
        if self._current is not None:
            self._current.cancel()  # stops within one token
        self._queue.put(None)
        self._worker.join()
        self.backend.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
