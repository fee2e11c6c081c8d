"""The baseline: raw llama-cpp-python (the high-level ``llama_cpp.Llama``)
with the same settings, prompt tokens and output length as thinkling.

Identical settings: n_ctx, n_threads (= n_threads_batch), n_batch (= n_ubatch,
as thinkling sets it), flash attention on (thinkling leaves llama.cpp's
``auto``, which turns it on for this CPU backend; ``Llama`` defaults it off),
greedy sampling (temperature 0), the prompt tokens thinkling rendered, and
``max_tokens`` equal to the number of tokens thinkling generated for that class.
Stop strings are not passed: the shared output length makes both do the same
work.

``Llama`` runs in its own thread, created after the profile's CPU pinning, so
its OpenMP workers inherit the pinning (and exit with it), as the engine's
worker thread does.
"""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ..profiles import Profile
from ..prompts import PromptCase
from .base import SHORT_ANSWER_TOKENS, Sample, StreamClock


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def _thinkling_model_params():
    """While ``Llama`` loads, give it the model parameters thinkling's backend uses.

    ``Llama.__init__`` takes its ``llama_model_params`` from
    ``llama_model_default_params()`` and has no argument for
    ``use_extra_bufts``, so without this the baseline would load with ggml's
    AMX buffers on an AMX build and die with SIGILL where thinkling does not
    (see ``runtime.backends.llama_cpp``). The one function is swapped for the
    duration of the load only, under a lock; a same-settings baseline needs it.
    """
    import llama_cpp.llama_cpp as C  # noqa: N812

    from thinkling.runtime.backends.llama_cpp import model_param_values, set_fields

    with _PARAMS_LOCK:
        original = C.llama_model_default_params

        def defaults():
            params = original()
            set_fields(params, model_param_values())
            return params

        C.llama_model_default_params = defaults
        try:
            yield
        finally:
            C.llama_model_default_params = original


class LlamaBaselineRunner:
    name = "llama-cpp-python"

    def __init__(self, model_path: str, profile: Profile, *, n_ctx: int,
                 short_tokens: int = SHORT_ANSWER_TOKENS):
        self.profile, self.short_tokens = profile, short_tokens
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-baseline")
        t0 = time.perf_counter()
        self.llm = self._pool.submit(self._load, model_path, profile, n_ctx).result()
        self.load_ms: float | None = (time.perf_counter() - t0) * 1000
        # (prompt tokens, max tokens) per class, set from the thinkling side
        self._work: dict[str, tuple[list[int], int]] = {}

    @staticmethod
    def _load(model_path: str, profile: Profile, n_ctx: int):
        from llama_cpp import Llama

        with _thinkling_model_params():
            return Llama(model_path=model_path, n_ctx=n_ctx, n_threads=profile.n_threads,
                         n_threads_batch=profile.n_threads, n_batch=profile.n_batch,
                         n_ubatch=profile.n_batch, flash_attn=True, verbose=False)

    def set_work(self, case: PromptCase, prompt_tokens: list[int], max_tokens: int) -> None:
        """The exact tokens and output length to reproduce for ``case``."""
        self._work[case.name] = (list(prompt_tokens), max(1, max_tokens))

    def run(self, case: PromptCase, run: int) -> Sample:
        return self._pool.submit(self._run, case, run).result()

    def _run(self, case: PromptCase, run: int) -> Sample:
        tokens, max_tokens = self._work[case.name]
        llm = self.llm
        llm.reset()  # cold prefix: the next eval clears the KV cache from position 0
        text: list[str] = []
        finish = None
        clock = StreamClock(self.short_tokens)
        for out in llm.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True):
            choice = out["choices"][0]
            finish = choice["finish_reason"] or finish
            # One streamed chunk per token, except where llama-cpp-python holds
            # back an incomplete UTF-8 sequence; the total is corrected below.
            clock.chunk(0 if choice["finish_reason"] else 1, bool(choice["text"]))
            text.append(choice["text"])
        clock.finish()
        # Tokens evaluated after the prompt; a length stop samples one more it never evaluates.
        generated = llm.n_tokens - len(tokens) + (1 if finish == "length" else 0)
        return clock.sample(runner=self.name, profile=self.profile.name, case=case.name, run=run,
                            prompt_tokens=len(tokens), cached_tokens=0, completion_tokens=generated,
                            finish_reason=finish, text="".join(text))

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None:
            self._pool.submit(llm.close).result()
        self._pool.shutdown(wait=True)
