"""The bridge's state: at most one loaded engine, its event pump, the request table.

Threads: the engine's own worker runs the model; one *pump* thread per loaded
engine reads the engine's handles in submission order and turns chunks into
events (buffered for ``poll``, or pushed to the callback). Entry points hold
``_lock`` only for short bookkeeping, never while a model loads or generates,
so ``poll``/``cancel``/``info`` answer at once from any thread.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable

from thinkling.runtime import __version__ as runtime_version
from thinkling.runtime import models
from thinkling.runtime.api import chat_request
from thinkling.runtime.api.limits import DEFAULT_THREAD_POLICY, THREAD_POLICIES, check_load
from thinkling.runtime.engine import Engine, EngineConfig
from thinkling.runtime.hardware import device_facts
from thinkling.runtime.modelinfo import check_gguf
from thinkling.runtime.speculative import SPECULATIVE_MODES

from . import cores
from .events import TERMINAL, Record, RequestTable
from .jsonio import SCHEMA_VERSION, BridgeError, dumps, error_fields

log = logging.getLogger(__name__)

MAX_POLL_WAIT_MS = 10_000
LOAD_KEYS = ("model", "threads", "n_ctx", "n_batch", "queue_size", "cpu_affinity", "speculative", "thread_policy")


@dataclass(frozen=True)
class LoadOptions:
    """``load_model``'s JSON, validated. ``cpu_affinity="big"`` pins to the fast cores."""

    model: str | None = None
    threads: int | None = None
    n_ctx: int = 2048
    n_batch: int = 512
    queue_size: int = 4
    cpu_affinity: tuple[int, ...] | None = None
    speculative: str = "off"  # the default for requests that do not say (runtime.speculative)
    thread_policy: str = DEFAULT_THREAD_POLICY  # "adaptive" (runtime.threads) or "fixed"

    @classmethod
    def from_json(cls, obj: dict) -> "LoadOptions":
        unknown = sorted(k for k in obj if k not in LOAD_KEYS)
        if unknown:
            raise BridgeError("invalid_request", f"unknown field {unknown[0]!r}", param=unknown[0])
        model = obj.get("model")
        if model is not None and (not isinstance(model, str) or len(model) > 4096):
            raise BridgeError("invalid_request", "model must be a name or a path", param="model")

        def integer(key: str, default: int | None, name: str | None = None) -> int | None:
            v = obj.get(key)  # bounds: the engine-load table, InvalidRequest as at every edge
            return default if v is None else check_load(name or key, v, key)

        d = cls()
        affinity = obj.get("cpu_affinity")
        threads = integer("threads", None, "n_threads")
        if affinity == "big":
            affinity = cores.big_cores()  # None on uniform cores: nothing to pin
            if affinity and threads is None:
                threads = len(affinity)
        elif affinity is not None:
            if (not isinstance(affinity, list) or not affinity or len(affinity) > 1024
                    or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c < 1024 for c in affinity)):
                raise BridgeError("invalid_request", 'cpu_affinity must be "big" or a list of CPU numbers',
                                  param="cpu_affinity")
        speculative = obj.get("speculative", d.speculative)
        if speculative not in SPECULATIVE_MODES:
            raise BridgeError("invalid_request", f"speculative must be one of {SPECULATIVE_MODES}",
                              param="speculative")
        thread_policy = obj.get("thread_policy", d.thread_policy)
        if thread_policy not in THREAD_POLICIES:
            raise BridgeError("invalid_request", f"thread_policy must be one of {THREAD_POLICIES}",
                              param="thread_policy")
        return cls(model=model or None, threads=threads, thread_policy=thread_policy, n_ctx=integer("n_ctx", d.n_ctx),
                   n_batch=integer("n_batch", d.n_batch), queue_size=integer("queue_size", d.queue_size),
                   cpu_affinity=tuple(sorted(set(affinity))) if affinity else None, speculative=speculative)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(n_ctx=self.n_ctx, n_threads=self.threads, n_batch=self.n_batch,
                            queue_size=self.queue_size, cpu_affinity=self.cpu_affinity,
                            speculative=self.speculative, thread_policy=self.thread_policy)


class _Pump:
    """Reads one engine's handles in submission order (the engine serves FIFO)."""

    def __init__(self, drain: Callable[[Record], None]):
        self._fifo: queue.Queue = queue.Queue()
        self._drain = drain
        self.thread = threading.Thread(target=self._run, name="thinkling-bridge-pump", daemon=True)
        self.thread.start()

    def push(self, rec: Record) -> None:
        self._fifo.put(rec)

    def stop(self) -> None:
        self._fifo.put(None)
        if threading.current_thread() is not self.thread:  # a callback may unload from here
            self.thread.join(timeout=30)

    def _run(self) -> None:
        while (rec := self._fifo.get()) is not None:
            try:
                self._drain(rec)
            except Exception:  # never let one request kill the pump
                log.exception("bridge pump failed on %s", rec.id)


class Bridge:
    """All bridge state. The module-level functions drive one shared instance."""

    def __init__(self, ttl_s: float = 120.0, max_finished: int = 32):
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._load_lock = threading.Lock()  # one load/unload at a time
        self._engine: Engine | None = None
        self._pump: _Pump | None = None
        self._opts: LoadOptions | None = None
        self._model_info: dict | None = None
        self._state = "unloaded"  # unloaded | loading | ready
        self._last_unload: dict | None = None
        self._callback: Callable[[str], Any] | None = None
        self._table = RequestTable(ttl_s=ttl_s, max_finished=max_finished)

    # --- model lifecycle ----------------------------------------------------

    def load_model(self, obj: dict) -> dict:
        opts = LoadOptions.from_json(obj)
        with self._load_lock:
            if self._engine is not None and opts == self._opts:
                return {"model": self._model_info, "already_loaded": True}
            # A typo or a broken file must not cost the app its loaded model: check first,
            # then free the old model before loading the new one (phones cannot hold two).
            try:
                ref = models.resolve(opts.model)
            except ImportError as e:  # a registered model whose PyPI package an app did not ship
                raise BridgeError("model_not_found", f"{opts.model or models.DEFAULT_MODEL!r} is registered, but its "
                                  f"package ({e.name}) is not installed; load a .gguf path instead",
                                  param="model") from None
            if ref.backend == "llama_cpp":
                check_gguf(ref.path)
            self._unload("replaced")
            with self._lock:
                self._state = "loading"
            try:
                # the engine pins its own worker to cpu_affinity; this thread stays unpinned
                engine = Engine(opts.model, opts.engine_config())
                d = engine.describe()
                info = {**d.info.to_dict(), "n_ctx": d.n_ctx, "threads": d.n_threads,
                        "thread_policy": engine.threads(),
                        "cpu_affinity": list(opts.cpu_affinity) if opts.cpu_affinity else None,
                        "queue_size": opts.queue_size, "load_ms": round(d.load_ms, 3)}
            except BaseException:
                with self._lock:
                    self._state = "unloaded"
                raise
            with self._lock:
                self._engine, self._opts, self._model_info = engine, opts, info
                self._pump = _Pump(self._drain)
                self._state, self._last_unload = "ready", None
        return {"model": info, "already_loaded": False}

    def unload_model(self, reason: str = "unload") -> dict:
        with self._load_lock:
            name = self._unload(reason)
        return {"unloaded": name is not None, "model": name}

    def _unload(self, reason: str) -> str | None:
        """Cancel everything on the current engine, free it, stop its pump."""
        with self._lock:
            engine, pump, opts = self._engine, self._pump, self._opts
            if engine is None:
                return None
            self._engine = self._pump = self._opts = self._model_info = None
            self._state = "unloaded"
            for rec in self._table.active():
                rec.cancel_reason = rec.cancel_reason or reason
            self._last_unload = {"reason": reason, "model": engine.model_name,
                                 "load": asdict(opts) if opts else None}
        engine.close()  # queued requests end "cancelled"; the running one stops within a token
        if pump is not None:
            pump.stop()
        return engine.model_name

    def shutdown(self) -> dict:
        with self._load_lock:
            name = self._unload("shutdown")
        with self._lock:
            self._callback = None
            self._table.clear()
            self._cond.notify_all()
        return {"shutdown": True, "model": name}

    def memory_pressure(self, obj: dict) -> dict:
        """``moderate``: forget finished requests and collect garbage (the model stays;
        its weights and KV cache are allocated at load, only unloading returns them).
        ``critical`` (the default): unload the model; later generate/complete answer
        ``not_loaded`` until the app calls ``load_model`` again."""
        unknown = sorted(k for k in obj if k != "level")
        if unknown:
            raise BridgeError("invalid_request", f"unknown field {unknown[0]!r}", param=unknown[0])
        level = obj.get("level", "critical")
        if level not in ("moderate", "critical"):
            raise BridgeError("invalid_request", 'level must be "moderate" or "critical"', param="level")
        with self._lock:
            dropped = self._table.drop_finished()
        unloaded = None
        if level == "critical":
            with self._load_lock:
                unloaded = self._unload("memory_pressure")
        gc.collect()
        return {"level": level, "unloaded": unloaded is not None, "model": unloaded,
                "dropped_requests": dropped}

    # --- generation ------------------------------------------------------------

    def _engine_for(self, obj: dict) -> Engine:
        """The loaded engine, if it serves the body's optional ``model`` (lock held)."""
        engine, model = self._engine, obj.get("model")
        if engine is None:
            raise BridgeError("not_loaded", self._not_loaded_message())
        if model is not None and model != engine.model_name:
            raise BridgeError("model_not_found", f"model {model!r} is not loaded (loaded: {engine.model_name!r})",
                              param="model")
        return engine

    def generate(self, obj: dict) -> dict:
        request = chat_request(obj)
        with self._lock:
            engine = self._engine_for(obj)
            self._table.sweep()
            handle = engine.submit(request)  # InvalidRequest / EngineBusy at once
            rec = Record(id="req_" + uuid.uuid4().hex[:16], handle=handle, model=engine.model_name)
            self._table.add(rec)
            self._pump.push(rec)  # same lock as submit: the pump sees the engine's FIFO order
        return {"request_id": rec.id}

    def complete(self, obj: dict) -> dict:
        """Blocking: the joined stream, or an error (never a partial event list)."""
        request = chat_request(obj)
        with self._lock:
            engine = self._engine_for(obj)
            handle = engine.submit(request)
        rec = Record(id="complete", handle=handle, model=engine.model_name)
        last = None
        for chunk in handle:  # re-raises ContextLengthExceeded etc.
            rec.events_for(chunk)
            last = chunk
        if last is None or last.finish_reason is None:
            raise BridgeError("internal", "the generation ended without a finish reason")
        return rec.result(last)

    def _drain(self, rec: Record) -> None:
        """Pump thread: deliver every chunk of ``rec`` as events, then its terminal event."""
        try:
            while (chunk := rec.handle.get()) is not None:
                for event in rec.events_for(chunk):
                    self._deliver(rec, event)
        except Exception as e:
            self._deliver(rec, {"type": "error", "request_id": rec.id, **error_fields(e)})
        if not rec.finished:
            self._deliver(rec, {"type": "error", "request_id": rec.id, "code": "internal",
                                "message": "the generation ended without a finish reason"})

    def _deliver(self, rec: Record, event: dict) -> None:
        if rec.finished:
            return
        callback = self._callback
        delivered = False
        if callback is not None:
            try:
                callback(dumps({"v": SCHEMA_VERSION, **event}))
                delivered = True
            except Exception:  # the app's bug must not stop the stream; keep the event for poll
                log.warning("bridge callback raised; event kept for poll", exc_info=True)
        with self._cond:
            if not delivered:
                rec.add(event)
            if event["type"] in TERMINAL:
                rec.finished_at = time.monotonic()
            self._cond.notify_all()

    # --- polling -----------------------------------------------------------------

    def poll(self, request_id: str, wait_ms: Any = 0) -> dict:
        if isinstance(wait_ms, bool) or not isinstance(wait_ms, (int, float)) or not wait_ms >= 0:
            raise BridgeError("invalid_request", "wait_ms must be a number >= 0", param="wait_ms")
        deadline = time.monotonic() + min(float(wait_ms), MAX_POLL_WAIT_MS) / 1000.0
        with self._cond:
            self._table.sweep()
            rec = self._table.get(request_id)
            if rec is None:
                raise BridgeError("invalid_request", f"unknown or expired request_id {request_id!r}",
                                  param="request_id")
            while not rec.buffer and not rec.finished and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            events = rec.take()
            if any(e["type"] in TERMINAL for e in events):
                self._table.remove(request_id)
            return {"request_id": request_id, "state": rec.state(), "events": events}

    def cancel(self, request_id: str) -> dict:
        with self._lock:
            rec = self._table.get(request_id)
            if rec is None:
                raise BridgeError("invalid_request", f"unknown or expired request_id {request_id!r}",
                                  param="request_id")
            if rec.finished:
                return {"request_id": request_id, "cancelled": False, "state": "finished"}
            rec.cancel_reason = rec.cancel_reason or "client"
            rec.handle.cancel()
            return {"request_id": request_id, "cancelled": True, "state": rec.state()}

    def set_callback(self, fn: Any) -> dict:
        """``fn(event_json)`` on the pump thread, or an object with ``onEvent(String)``
        (a Kotlin/Java interface through Chaquopy); ``None`` clears it."""
        if fn is None:
            target = None
        elif callable(getattr(fn, "onEvent", None)):
            target = fn.onEvent
        elif callable(fn):
            target = fn
        else:
            raise BridgeError("invalid_request", "callback must be callable, have onEvent(String), or be null")
        with self._lock:
            self._callback = target
        return {"callback": target is not None}

    # --- facts ---------------------------------------------------------------------

    def _not_loaded_message(self) -> str:
        if self._state == "loading":
            return "a model is loading; try again when load_model returns"
        if self._last_unload and self._last_unload["reason"] == "memory_pressure":
            return "the model was unloaded under memory pressure; call load_model to load it again"
        return "no model is loaded; call load_model first"

    def info(self) -> dict:
        with self._lock:
            self._table.sweep()
            engine = self._engine
            return {
                "bridge": {"schema": SCHEMA_VERSION, "thinkling": runtime_version},
                "state": self._state,
                "model": self._model_info,
                "queue_depth": engine.queue_depth if engine else 0,
                "requests": {"active": len(self._table.active()), "kept": len(self._table),
                             "buffered_events": self._table.buffered_events()},
                "callback": self._callback is not None,
                "last_unload": self._last_unload,
                "device": {**device_facts(), "big_cores": cores.big_cores()},
            }

    def list_models(self) -> dict:
        rows = [{"name": name, "description": desc, "path": str(path) if path else None,
                 "available": path is not None}
                for name, desc, path in models.list_refs()]
        loaded = self._engine.model_name if self._engine else None
        return {"models": rows, "loaded": loaded}
