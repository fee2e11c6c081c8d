"""llama.cpp backend over llama-cpp-python's low-level C bindings.

We use the C API (``llama_cpp.llama_cpp``) rather than the high-level ``Llama``
class so that sampling, detokenization and prefix reuse live once in
``runtime.generate`` for every backend, logits are read in place (no copy of
an n_ctx x n_vocab score matrix), and native handles are freed exactly when
``close()`` is called.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..errors import InvalidModelFile, InvalidRequest
from ..threads import ThreadGovernor, ThreadPolicy
from .base import BackendOptions, Capabilities

log = logging.getLogger(__name__)


# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the last line)
_GGML_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO,
                4: logging.ERROR}
_native_log = logging.getLogger("thinkling.runtime.llama_cpp.native")
_LOG_CALLBACK = None  # module-level so ctypes keeps the callback alive


def _lib():
    import llama_cpp.llama_cpp as C  # noqa: N812 - the C API module

    global _LOG_CALLBACK
    if _LOG_CALLBACK is None:
        # llama-cpp-python's default callback prints to stderr whatever our
        # logging says; route llama.cpp's log into Python logging instead
        # (its warnings become INFO: they are about model files, not errors).
        def _route(level, text, _user):
            lvl = _GGML_LEVELS.get(level, logging.DEBUG)
            if _native_log.isEnabledFor(lvl):
                _native_log.log(lvl, text.decode("utf-8", errors="replace").rstrip())

        _LOG_CALLBACK = C.llama_log_callback(_route)
        C.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))
    return C


def c_api():
    """llama.cpp's C API (llama-cpp-python's ctypes bindings) with its log routed
    into Python logging; for tools such as the converter's quantizer."""
    return _lib()


_BACKEND_READY = False


def _init_once(C) -> None:
    global _BACKEND_READY
    if not _BACKEND_READY:
        C.llama_backend_init()
        _BACKEND_READY = True


def build_info() -> str:
    """llama.cpp build string plus the extra-buffer policy in force, for benchmark fingerprints."""
    import llama_cpp

    C = _lib()
    info = C.llama_print_system_info()
    enabled, why = extra_buffers_policy()
    return (f"llama-cpp-python {llama_cpp.__version__}; {info.decode(errors='replace').strip()}; "
            f"extra buffer types {'on' if enabled else 'off'} ({why})")


# --- the AMX guard ---------------------------------------------------------
# pip builds llama.cpp for the installing CPU (GGML_NATIVE). On a CPU that
# advertises AMX, ggml then registers its AMX "extra buffer type": weights are
# repacked into it at load and every matmul on them runs tile instructions.
# On the VMs this project runs on those instructions fault (SIGILL in
# ggml_backend_amx_mul_mat on an OpenMP worker thread, although the kernel
# grants the tile permission; llama.cpp PR #26954, issues #28756/#20824), and
# a signal cannot be caught from Python. So by default we turn ggml's extra
# buffer types off whenever the build has AMX compiled in; the weights then
# stay in plain CPU buffers and run the AVX-512/VNNI kernels. The cost is
# measured in docs/bench.md. THINKLING_LLAMA_EXTRA_BUFFERS=on turns them back
# on (a machine whose AMX works), =off forces them off anywhere.
EXTRA_BUFFERS_ENV = "THINKLING_LLAMA_EXTRA_BUFFERS"


def build_has_amx() -> bool:
    """Whether this llama.cpp build compiled ggml's AMX path in (its system info says AMX_INT8 = 1)."""
    info = _lib().llama_print_system_info().decode(errors="replace")
    return "AMX_INT8 = 1" in info


def extra_buffers_policy() -> tuple[bool, str]:
    """``(enabled, reason)``: whether models load with ggml's extra buffer types."""
    setting = os.environ.get(EXTRA_BUFFERS_ENV, "auto").strip().lower()
    if setting in ("on", "1", "true"):
        return True, f"{EXTRA_BUFFERS_ENV}={setting}"
    if setting in ("off", "0", "false"):
        return False, f"{EXTRA_BUFFERS_ENV}={setting}"
    if setting not in ("", "auto"):
        log.warning("ignoring %s=%r (expected auto, on or off)", EXTRA_BUFFERS_ENV, setting)
    if build_has_amx():
        return False, "auto: the build has AMX kernels, which fault on many VMs"
    return True, "auto: no AMX in this build"


def set_fields(struct: ctypes.Structure, values: dict) -> None:
    """Write ``values`` into a ctypes structure, refusing names it does not have.

    Assigning an unknown attribute to a ctypes structure silently creates a
    Python attribute and changes nothing in C, which is how a renamed field of
    a newer llama-cpp-python goes unnoticed; this raises instead.
    """
    names = {f[0] for f in type(struct)._fields_}
    for key, value in values.items():
        if key not in names:
            raise TypeError(f"{type(struct).__name__} has no field {key!r} in this llama-cpp-python")
        setattr(struct, key, value)


def model_param_values() -> dict:
    """The ``llama_model_params`` fields every llama.cpp load in thinkling sets
    (the engine's backend, the converter's checks and the bench baseline)."""
    enabled, _ = extra_buffers_policy()
    return {"use_extra_bufts": enabled}


def context_param_values(n_ctx: int, n_batch: int, n_threads: int) -> dict:
    """The ``llama_context_params`` fields the backend sets."""
    return {"n_ctx": n_ctx, "n_batch": n_batch, "n_ubatch": n_batch,
            "n_threads": n_threads, "n_threads_batch": n_threads}


class LlamaCppBackend:
    """One llama.cpp model + context holding a single sequence's KV cache."""

    name = "llama_cpp"
    # native handles, None until made: ``close`` (and ``__del__`` after a failed load) frees what exists
    _C = _model = _ctx = _batch = None

    def __init__(self, path: str, options: BackendOptions):
        C = _lib()
        _init_once(C)
        self._C = C
        self.path = str(path)
        mparams = C.llama_model_default_params()  # mmap is llama.cpp's default load mode
        values = model_param_values()
        if not options.use_mmap:  # read into memory (the default, AUTO, maps the file on CPU)
            values["load_mode"] = C.LLAMA_LOAD_MODE_NONE
        set_fields(mparams, values)
        self._model = C.llama_model_load_from_file(self.path.encode(), mparams)
        if not self._model:
            raise InvalidModelFile(self.path, "llama.cpp could not load it (see the log for the reason)")
        self._vocab = C.llama_model_get_vocab(self._model)
        cparams = C.llama_context_default_params()
        n_ctx_train = C.llama_model_n_ctx_train(self._model)
        self.n_ctx = min(options.n_ctx, n_ctx_train) if n_ctx_train > 0 else options.n_ctx
        threads = options.n_threads or os.cpu_count() or 1
        set_fields(cparams, context_param_values(self.n_ctx, min(options.n_batch, self.n_ctx), threads))
        self.n_threads = threads
        self._counts = (threads, threads)  # (n_threads, n_threads_batch) llama.cpp was last given
        self.governor = (ThreadGovernor(ThreadPolicy(max_threads=threads))
                         if options.adaptive_threads and threads > 1 else None)
        self.capabilities = Capabilities(score_many=True, grammar=True, hidden_state=True, adaptive_threads=True)
        self._ctx = C.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            C.llama_model_free(self._model)
            self._model = None
            raise InvalidModelFile(self.path, "llama.cpp could not create a context for it")
        self._mem = C.llama_get_memory(self._ctx)
        self.n_batch = cparams.n_batch
        self._batch = C.llama_batch_init(self.n_batch, 0, 1)
        self.n_vocab = C.llama_vocab_n_tokens(self._vocab)
        self.n_embd = C.llama_model_n_embd(self._model)
        self._kv: list[int] = []
        self._piece_cache: dict[int, bytes] = {}
        self._meta: dict[str, str] | None = None
        self._not_text: np.ndarray | None = None  # tokens never allowed in a constrained answer (lazy)

    # --- vocabulary -----------------------------------------------------
    @property
    def kv_tokens(self) -> list[int]:
        return self._kv

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]:
        C = self._C
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (C.llama_token * cap)()
        n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            buf = (C.llama_token * cap)()
            n = C.llama_tokenize(self._vocab, data, len(data), buf, cap, add_special, parse_special)
        return list(buf[:n])

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._piece_cache.get(token_id)
        if piece is None:
            C = self._C
            buf = ctypes.create_string_buffer(64)
            n = C.llama_token_to_piece(self._vocab, token_id, buf, 64, 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = C.llama_token_to_piece(self._vocab, token_id, buf, -n, 0, True)
            piece = buf.raw[:n]
            self._piece_cache[token_id] = piece
        return piece

    def is_eog(self, token_id: int) -> bool:
        return bool(self._C.llama_vocab_is_eog(self._vocab, token_id))

    # --- evaluation -------------------------------------------------------
    def truncate(self, n_keep: int) -> None:
        """Drop KV entries from position ``n_keep`` on (prefix reuse keeps the rest)."""
        if n_keep < len(self._kv):
            self._C.llama_memory_seq_rm(self._mem, 0, n_keep, -1)
            del self._kv[n_keep:]

    def _decode(self, tokens: list[int], all_logits: bool) -> int:
        """Append ``tokens`` to the cache in batches; returns how many logit rows the last batch kept."""
        C, b = self._C, self._batch
        n = 0
        for start in range(0, len(tokens), self.n_batch):
            part = tokens[start:start + self.n_batch]
            b.n_tokens = n = len(part)
            pos0 = len(self._kv)
            for i, tok in enumerate(part):
                b.token[i] = tok
                b.pos[i] = pos0 + i
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = 0
                b.logits[i] = all_logits or i == len(part) - 1
            rc = C.llama_decode(self._ctx, b)
            if rc != 0:
                # leave the cache consistent with what we believe it holds
                self._C.llama_memory_seq_rm(self._mem, 0, pos0, -1)
                raise RuntimeError(f"llama_decode failed with code {rc}")
            self._kv.extend(part)
        return n if all_logits else 1

    def eval(self, tokens: list[int]) -> np.ndarray:
        """Append ``tokens`` to the cache in batches; return the last position's logits."""
        if self.governor is not None and len(tokens) == 1:  # a decode step: the governor's measure
            t0 = time.perf_counter()
            self._decode(tokens, all_logits=False)
            self.governor.observe(time.perf_counter() - t0)
            if (self.governor.threads, self.governor.settled) != self._counts:  # a switch, or a trial kept
                self._follow_governor()
        else:
            self._decode(tokens, all_logits=False)
        ptr = self._C.llama_get_logits_ith(self._ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _follow_governor(self) -> None:
        """Give llama.cpp the governor's counts: single-token steps use ``n_threads`` (a
        trial's count during a trial), batches ``n_threads_batch`` (the settled count), so a
        prompt evaluated after a step-down runs on the count that survived contention."""
        g = self.governor
        self._counts = (g.threads, g.settled)
        self._C.llama_set_n_threads(self._ctx, *self._counts)
        self.n_threads = g.threads

    def native_threads(self) -> tuple[int, int]:
        """llama.cpp's own ``(n_threads, n_threads_batch)`` for this context."""
        return self._C.llama_n_threads(self._ctx), self._C.llama_n_threads_batch(self._ctx)

    def eval_hidden(self, tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """``eval`` that also returns the final hidden state of the last token, ``[n_embd]``
        (a copy; the input of the output head, after the final norm).

        Embeddings are switched on for the last token alone: with them on, llama.cpp
        makes every token of a batch an output and would run the output head (262k
        rows on Gemma) over the whole prompt. So all but the last token go through
        the ordinary path, the last one is evaluated by itself with embeddings on,
        and they are switched off again before anything else runs.
        """
        if not tokens:
            raise ValueError("eval_hidden needs at least one token")
        C = self._C
        if len(tokens) > 1:
            self.eval(tokens[:-1])
        C.llama_set_embeddings(self._ctx, True)
        try:
            self._decode(tokens[-1:], all_logits=False)
            ptr = C.llama_get_embeddings_ith(self._ctx, -1)
            if not ptr:
                raise RuntimeError("llama.cpp returned no hidden state for the last token")
            hidden = np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).copy()
        finally:
            C.llama_set_embeddings(self._ctx, False)
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(self._ctx, -1), shape=(self.n_vocab,))
        return logits, hidden

    def eval_many(self, tokens: list[int]) -> np.ndarray:
        """Append ``tokens`` (at most ``n_batch``) in one pass; return the logits after
        each of them, ``[len(tokens), n_vocab]`` (a view valid until the next call).
        The speculative loop scores a draft with it."""
        if not 0 < len(tokens) <= self.n_batch:
            raise ValueError(f"eval_many takes 1..{self.n_batch} tokens, got {len(tokens)}")
        rows = self._decode(tokens, all_logits=True)
        ptr = self._C.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab))

    # --- metadata ---------------------------------------------------------
    def metadata(self) -> dict[str, str]:
        if self._meta is None:
            C, meta = self._C, {}
            buf = ctypes.create_string_buffer(1 << 16)
            for i in range(C.llama_model_meta_count(self._model)):
                C.llama_model_meta_key_by_index(self._model, i, buf, len(buf))
                key = buf.value.decode("utf-8", errors="replace")
                n = C.llama_model_meta_val_str_by_index(self._model, i, buf, len(buf))
                if n >= len(buf):
                    big = ctypes.create_string_buffer(n + 1)
                    C.llama_model_meta_val_str_by_index(self._model, i, big, n + 1)
                    meta[key] = big.value.decode("utf-8", errors="replace")
                else:
                    meta[key] = buf.value.decode("utf-8", errors="replace")
            self._meta = meta
        return self._meta

    def _special_text(self, token_id: int) -> str:
        return self.token_bytes(token_id).decode("utf-8", errors="replace") if token_id >= 0 else ""

    @property
    def bos_text(self) -> str:
        return self._special_text(self._C.llama_vocab_bos(self._vocab))

    @property
    def eos_text(self) -> str:
        return self._special_text(self._C.llama_vocab_eos(self._vocab))

    def chat_template(self) -> str | None:
        return self.metadata().get("tokenizer.chat_template") or None

    # --- structured output ------------------------------------------------
    def constraint(self, grammar: str) -> GrammarConstraint:
        """llama.cpp's grammar sampler for ``grammar`` (GBNF, root rule ``root``) on this vocabulary."""
        if self._not_text is None:
            C = self._C
            attrs = np.fromiter((C.llama_vocab_get_attr(self._vocab, i) for i in range(self.n_vocab)),
                                dtype=np.int64, count=self.n_vocab)
            eog = np.fromiter((C.llama_vocab_is_eog(self._vocab, i) for i in range(self.n_vocab)),
                              dtype=bool, count=self.n_vocab)
            self._not_text = ((attrs & _NOT_TEXT_ATTRS) != 0) & ~eog
        return GrammarConstraint(self._C, self._vocab, self.n_vocab, grammar, self._not_text)

    def close(self) -> None:
        """Free the batch, the context and the model now (not at GC time)."""
        C = self._C
        if C is None:
            return
        if self._batch is not None:
            C.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            C.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            C.llama_model_free(self._model)
            self._model = None
        self._kv = []

    def __del__(self):
        self.close()


# Token kinds that never belong in a constrained answer although their text would match
# (llama.cpp's grammar reads a control token's text, so "<unused26>" passes as a JSON
# string character): unknown, unused, control and user-defined tokens; EOG stays allowed.
_NOT_TEXT_ATTRS = (1 << 0) | (1 << 1) | (1 << 3) | (1 << 4)
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GrammarConstraint:
    """One generation's grammar state: which tokens may come next, in llama.cpp's own
    grammar engine (``llama_sampler_init_grammar``), driven from our sampler.

    ``allows`` asks about one token (cheap: a one-candidate array), ``mask`` returns
    a copy of the logits with every token the grammar refuses at ``-inf`` (a pass
    over the whole vocabulary), ``accept`` advances the state. A token must be
    allowed before it is accepted: llama.cpp aborts the process on a refused one.
    """

    _smpl = None  # the native sampler, None until made (``close`` after a failed init)

    def __init__(self, C, vocab, n_vocab: int, grammar: str, not_text: np.ndarray | None = None):
        self._C = C
        self._not_text = not_text if not_text is not None else np.zeros(n_vocab, dtype=bool)
        self._smpl = C.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._smpl:
            raise InvalidRequest("llama.cpp could not parse the grammar (see the log)", param="response_format")
        self._all = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._all["id"] = np.arange(n_vocab, dtype=np.int32)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)
        eos = C.llama_vocab_eos(vocab)
        self._end = eos if eos >= 0 else C.llama_vocab_eot(vocab)

    def _apply(self, data: np.ndarray) -> None:
        C = self._C
        arr = C.llama_token_data_array(
            data=data.ctypes.data_as(C.llama_token_data_p), size=len(data), selected=-1, sorted=False)
        C.llama_sampler_apply(self._smpl, ctypes.byref(arr))

    def allows(self, token_id: int) -> bool:
        if self._not_text[token_id]:
            return False
        self._one["id"], self._one["logit"] = token_id, 0.0
        self._apply(self._one)
        return bool(np.isfinite(self._one["logit"][0]))

    def can_end(self) -> bool:
        """Whether the text so far is complete under the grammar (an end-of-generation token is allowed)."""
        return self._end >= 0 and self.allows(self._end)

    def mask(self, logits: np.ndarray) -> np.ndarray:
        self._all["logit"] = logits
        self._apply(self._all)
        out = self._all["logit"].copy()
        out[self._not_text] = -np.inf
        return out

    def accept(self, token_id: int) -> None:
        self._C.llama_sampler_accept(self._smpl, token_id)

    def close(self) -> None:
        if self._smpl:
            self._C.llama_sampler_free(self._smpl)
            self._smpl = None

    def __del__(self):
        self.close()


def open_backend(path: str, options: BackendOptions) -> LlamaCppBackend:
    if not Path(path).is_file():
        raise InvalidModelFile(path, "no such file")
    return LlamaCppBackend(path, options)
