"""The limits tables: every bound a request field, or an engine-load option, has, written once.

``LIMITS`` (requests): the stdlib request mapping (``runtime.api.requests``)
checks bodies against it, the HTTP schema (``runtime.server.schemas``) builds
its pydantic bounds from it (so OpenAPI shows them), and the engine checks
runtime requests against the same rows (``runtime.engine.validate_request``).

``LOAD_LIMITS`` (loading a model): ``EngineConfig`` (``runtime.engine``), the
server's settings (``runtime.server.settings``) and the bridge's ``load_model``
(``mobile_bridge.bridge.LoadOptions``) check their options against it, each
under its own field name, so an out-of-range value is the same
``InvalidRequest`` at every edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidRequest
from ..types import DEFAULT_MAX_TOKENS

__all__ = ["DEFAULT_MAX_TOKENS", "MAX_TOKENS_CAP", "ROLES", "MAX_STOPS", "MAX_STOP_CHARS", "MAX_DEADLINE_MS", "Limit",
           "LIMITS", "COMPLETION_LIMITS", "SAMPLING", "LOAD_LIMITS", "THREAD_POLICIES", "DEFAULT_THREAD_POLICY",
           "check_load", "bad"]
MAX_TOKENS_CAP = 2048  # larger asks are clamped (the server's max_tokens_cap)
ROLES = ("system", "developer", "user", "assistant")  # "developer" is treated as "system"
MAX_STOPS, MAX_STOP_CHARS = 8, 256
MAX_DEADLINE_MS = 86_400_000.0


@dataclass(frozen=True)
class Limit:
    """One numeric field: ``int`` or ``num`` (int or float), and its bounds (None: unbounded).
    ``low_open``: the low bound itself is refused (``> low`` rather than ``>= low``)."""

    kind: Literal["int", "num"]
    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def check(self, name: str, v: Any) -> Any:
        """``v`` if it fits, else ``InvalidRequest`` naming ``name``."""
        if isinstance(v, bool) or not isinstance(v, int if self.kind == "int" else (int, float)):
            raise bad(name, "must be an integer" if self.kind == "int" else "must be a number")
        if isinstance(v, float) and not math.isfinite(v):
            raise bad(name, "must be finite")
        if self.low is not None and (v <= self.low if self.low_open else v < self.low):
            raise bad(name, f"must be {'>' if self.low_open else '>='} {self.low}")
        if self.high is not None and v > self.high:
            raise bad(name, f"must be <= {self.high}")
        return v


# Outside these ranges the float math degenerates (a 1e-300 penalty turns the
# distribution into NaN) or the request cannot be served.
LIMITS: dict[str, Limit] = {
    "max_tokens": Limit("int", 1),
    "max_completion_tokens": Limit("int", 1),
    "temperature": Limit("num", 0, 100),
    "top_p": Limit("num", 0, 1, low_open=True),
    "top_k": Limit("int", 0, 1 << 20),
    "min_p": Limit("num", 0, 1),
    "repeat_penalty": Limit("num", 0.01, 100),
    "frequency_penalty": Limit("num", -2, 2),
    "presence_penalty": Limit("num", -2, 2),
    "seed": Limit("int", -(1 << 63), (1 << 64) - 1),
    "reasoning_budget": Limit("int", 0, 1 << 31),
    "deadline_ms": Limit("num", 0, MAX_DEADLINE_MS, low_open=True),
    "n": Limit("int", 1, 1),
    "top_logprobs": Limit("int", 0, 20),
}
# Fields only a text completion has (chat's ``logprobs`` is a boolean).
COMPLETION_LIMITS: dict[str, Limit] = {
    "logprobs": Limit("int", 0, 5),
    "best_of": Limit("int", 1, 1),
}
SAMPLING = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "frequency_penalty", "presence_penalty")

# Engine-load options, by EngineConfig's names (the server and the bridge say ``threads``
# for ``n_threads``). Below 64 tokens no chat template fits; the highs only refuse absurd
# values (a model's own context length caps n_ctx further at load).
LOAD_LIMITS: dict[str, Limit] = {
    "n_ctx": Limit("int", 64, 1 << 20),
    "n_threads": Limit("int", 1, 1024),
    "n_batch": Limit("int", 1, 1 << 16),
    "queue_size": Limit("int", 1, 1024),
}

# "fixed": always n_threads; "adaptive": decode between 1 and n_threads by measured speed
# (runtime.threads), stepping down when another process takes a core. Adaptive is the
# default because phones and laptops always run other work beside the engine; every edge
# (EngineConfig, thinkling serve / ask, the bridge) reads its default from here.
THREAD_POLICIES = ("fixed", "adaptive")
DEFAULT_THREAD_POLICY = "adaptive"


def check_load(name: str, value: Any, param: str | None = None) -> Any:
    """``value`` if it fits ``LOAD_LIMITS[name]``, else ``InvalidRequest`` naming ``param``
    (the edge's own field name; default ``name``)."""
    return LOAD_LIMITS[name].check(param or name, value)


def bad(param: str, message: str) -> InvalidRequest:
    """The one shape of a field error: ``"<param>: <message>"``, ``param`` set."""
    return InvalidRequest(f"{param}: {message}", param=param)
