"""The backend contract: the small surface every inference engine implements.

llama.cpp and onnxruntime are two equal implementations. Everything above the
backend (sampling, stop strings, detokenization, prefix reuse, timings) lives
once in ``runtime.generate`` so both behave the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class BackendOptions:
    """Load-time options shared by all backends."""

    n_ctx: int = 4096
    n_threads: int | None = None  # None: the machine's physical cores
    n_batch: int = 512
    # CPUs for the engine's worker thread (and the compute threads it spawns);
    # applied by the engine in that thread, never to the caller's thread.
    cpu_affinity: tuple[int, ...] | None = None
    # Let ``runtime.threads.ThreadGovernor`` move the decode thread count between 1 and
    # ``n_threads`` by what each count delivers (backends that support it: llama.cpp).
    adaptive_threads: bool = False
    # Map the model file (llama.cpp's default: fast load, pages shared between processes)
    # or read it into memory. A mapped file rewritten in place under a running process
    # kills it with SIGBUS; a long-lived server reads it instead (docs/server.md).
    use_mmap: bool = True
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Capabilities:
    """What a loaded backend can do beyond the core contract; callers read this record
    instead of probing for methods.

    ``score_many``: ``eval_many`` scores several positions in one pass (speculative
    decoding); ``grammar``: ``constraint(gbnf)`` gives a grammar sampler (structured
    output); ``hidden_state``: ``eval_hidden`` returns a hidden state, not ``None``;
    ``adaptive_threads``: the decode thread count can follow a ``ThreadGovernor``.
    """

    score_many: bool = False
    grammar: bool = False
    hidden_state: bool = False
    adaptive_threads: bool = False


@runtime_checkable
class Backend(Protocol):
    """A loaded model plus its KV cache for one sequence.

    ``eval`` appends tokens to the cache and returns the next-token logits
    (float32, shape ``[n_vocab]``; the view is valid until the next call).
    ``kv_tokens`` is what the cache holds, so the generation loop can reuse a
    shared prefix with ``truncate``.
    """

    name: str
    n_ctx: int
    n_vocab: int
    capabilities: Capabilities
    n_threads: int | None  # compute threads in use (None: the backend does not say)
    governor: Any  # the ``runtime.threads.ThreadGovernor`` moving ``n_threads``, or None
    bos_text: str  # the beginning-of-sequence token's text ("" when the vocabulary has none)
    eos_text: str  # the end-of-sequence token's text ("")

    @property
    def kv_tokens(self) -> list[int]: ...

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool = True) -> list[int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def is_eog(self, token_id: int) -> bool: ...

    def eval(self, tokens: list[int]) -> np.ndarray: ...

    def eval_hidden(self, tokens: list[int]) -> tuple[np.ndarray, np.ndarray | None]:
        """``eval`` plus the final hidden state of the last token (``[n_embd]``, a copy),
        or ``None`` where this model cannot give it: the ``auto`` controller's task-free signal."""
        ...

    def truncate(self, n_keep: int) -> None: ...

    def metadata(self) -> dict[str, str]: ...

    def chat_template(self) -> str | None: ...

    def close(self) -> None: ...
