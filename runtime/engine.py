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
from collections.abc import Iterator
from dataclasses import dataclass

from . import models
from .backends import BackendOptions, open_backend
from .errors import EngineBusy, EngineClosed, InvalidRequest
from .generate import join_stream
from .hardware import physical_cores
from .modelinfo import ModelInfo, check_gguf, gguf_info
from .speculative import SPECULATIVE_MODES
from .structured import grammar_for
from .thinking import ThinkingController
from .types import Chunk, GenerationRequest, GenerationResult, ResponseFormat, Timings, THINK_MODES

log = logging.getLogger(__name__)
_DONE = object()


THREAD_POLICIES = ("fixed", "adaptive")


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings. ``n_threads=None`` means the machine's physical cores."""

    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512
    queue_size: int = 8
    cpu_affinity: tuple[int, ...] | None = None
    speculative: str = "off"  # default for requests that do not say: "ngram" or "off" (runtime.speculative)
    # "fixed": always n_threads; "adaptive": between 1 and n_threads by measured decode speed
    # (runtime.threads: steps down when another process takes a core). Opt-in everywhere:
    # the collapse it guards against did not reproduce on the Intel VM where it was built.
    thread_policy: str = "fixed"
    use_mmap: bool = True  # False: read the weights into memory (immune to the file changing)


def validate_request(req: GenerationRequest) -> None:
    """Reject requests no layer could serve; edges validate too, but the engine
    never trusts them (the bridge and library callers reach it directly)."""
    if (req.prompt is None) == (req.messages is None):
        raise InvalidRequest("exactly one of prompt or messages must be given", param="prompt")
    if req.prompt is not None and not isinstance(req.prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    if not isinstance(req.max_tokens, int) or req.max_tokens < 1:
        raise InvalidRequest("max_tokens must be a positive integer", param="max_tokens")
    s = req.sampling
    checks = [
        # Same ranges as the HTTP schema: outside them the float math degenerates
        # (e.g. a 1e-300 penalty turns the distribution into NaN).
        (0 <= s.temperature <= 100, "temperature", "temperature must be in [0, 100]"),
        (0 < s.top_p <= 1, "top_p", "top_p must be in (0, 1]"),
        (s.top_k >= 0, "top_k", "top_k must be >= 0"),
        (0 <= s.min_p <= 1, "min_p", "min_p must be in [0, 1]"),
        (0.01 <= s.repeat_penalty <= 100, "repeat_penalty", "repeat_penalty must be in [0.01, 100]"),
        (-2 <= s.frequency_penalty <= 2, "frequency_penalty", "frequency_penalty must be in [-2, 2]"),
        (-2 <= s.presence_penalty <= 2, "presence_penalty", "presence_penalty must be in [-2, 2]"),
        (req.think in THINK_MODES, "think", f"think must be one of {THINK_MODES}"),
        (req.reasoning_budget is None or req.reasoning_budget >= 0, "reasoning_budget",
         "reasoning_budget must be >= 0"),
        (req.deadline_s is None or req.deadline_s > 0, "deadline_ms", "deadline must be > 0"),
        (req.speculative is None or req.speculative in SPECULATIVE_MODES, "speculative",
         f"speculative must be one of {SPECULATIVE_MODES}"),
    ]
    for ok, param, msg in checks:
        if not ok:
            raise InvalidRequest(msg, param=param)
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


class Engine:
    """Load a model once and serve generation requests through one worker.

    >>> with Engine("gemma-3-270m") as eng:
    ...     print(eng.generate(GenerationRequest(prompt="The capital of France is")).text)
    """

    def __init__(self, model: str | None = None, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        if self.config.speculative not in SPECULATIVE_MODES:
            raise InvalidRequest(f"speculative must be one of {SPECULATIVE_MODES}", param="speculative")
        if self.config.thread_policy not in THREAD_POLICIES:
            raise InvalidRequest(f"thread_policy must be one of {THREAD_POLICIES}", param="thread_policy")
        self.ref = models.resolve(model)
        self._header = check_gguf(self.ref.path) if self.ref.backend == "llama_cpp" else None
        t0 = time.perf_counter()
        opts = BackendOptions(n_ctx=self.config.n_ctx,
                              n_threads=self.config.n_threads or physical_cores(),
                              n_batch=self.config.n_batch, cpu_affinity=self.config.cpu_affinity,
                              adaptive_threads=self.config.thread_policy == "adaptive",
                              use_mmap=self.config.use_mmap)
        self.backend = open_backend(self.ref.backend, str(self.ref.path), opts)
        self.load_ms = (time.perf_counter() - t0) * 1000
        self._pending_load_ms = self.load_ms  # reported on the first request
        self.controller = ThinkingController(self.backend, self.ref)
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
        return ModelInfo(name=self.ref.name, path=str(self.ref.path), format="onnx",
                         size_bytes=self.ref.path.stat().st_size)

    def threads(self) -> dict:
        """The thread policy in force: ``fixed`` with its count, or the governor's state."""
        gov = getattr(self.backend, "governor", None)
        if gov is not None:
            return gov.describe()
        return {"policy": "fixed", "threads": getattr(self.backend, "n_threads", self.config.n_threads)}

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
        if request.speculative is None:
            request.speculative = self.config.speculative
        request.submitted_at = time.perf_counter()
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
            if chunk.timings is not None:
                chunk.timings.queue_ms = queue_ms
                chunk.timings.load_ms, self._pending_load_ms = self._pending_load_ms, 0.0
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
            if h is not None:
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
