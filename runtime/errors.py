"""Typed errors of the runtime.

Errors carry fields, not just strings, so each edge (HTTP, CLI, mobile bridge)
can translate them once into its own shape (status code, exit code, error code).
Core code raises these and never prints, exits or raises transport errors.
"""

from __future__ import annotations


class ThinklingError(Exception):
    """Base class. ``code`` is a stable machine-readable identifier."""

    code = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ModelNotFound(ThinklingError):
    code = "model_not_found"

    def __init__(self, model: str, available: list[str] | None = None, reason: str | None = None):
        self.model = model
        self.available = list(available or [])
        self.reason = reason  # why a registered model is not there (e.g. not built yet)
        hint = f" (available: {', '.join(self.available)})" if self.available else ""
        super().__init__(f"model not found: {model!r}" + (f": {reason}" if reason else "") + hint)


class InvalidModelFile(ThinklingError):
    code = "invalid_model_file"

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"invalid model file {self.path}: {reason}")


class ContextLengthExceeded(ThinklingError):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int, max_tokens: int = 0):
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.max_tokens = max_tokens
        super().__init__(
            f"prompt has {prompt_tokens} tokens but the context holds {limit}"
            + (f" (with room for {max_tokens} new tokens requested)" if max_tokens else "")
        )


class InvalidRequest(ThinklingError):
    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None):
        self.param = param
        super().__init__(message)


class Cancelled(ThinklingError):
    """The request was cancelled before it produced a result.

    ``reason`` is ``"client"`` (explicit cancel / disconnect), ``"deadline"`` or
    ``"shutdown"``.
    """

    code = "cancelled"

    def __init__(self, reason: str = "client"):
        self.reason = reason
        super().__init__(f"request cancelled ({reason})")


class EngineBusy(ThinklingError):
    """The engine's bounded queue is full; retry later."""

    code = "busy"

    def __init__(self, queue_size: int, retry_after_s: float = 1.0):
        self.queue_size = queue_size
        self.retry_after_s = retry_after_s
        super().__init__(f"engine busy: {queue_size} requests already queued")


class EngineClosed(ThinklingError):
    code = "not_loaded"

    def __init__(self) -> None:
        super().__init__("no model is loaded (the engine was closed)")


class MissingExtra(ThinklingError):
    """A feature needs an optional dependency group (a pip "extra") that this
    install lacks; ``hint`` is the command that adds it."""

    code = "missing_extra"

    def __init__(self, module: str, extra: str, feature: str | None = None):
        self.module = module
        self.extra = extra
        self.feature = feature
        self.hint = f"pip install 'thinkling[{extra}]'"
        if feature:
            super().__init__(f"{feature} needs the '{extra}' extra ({module} is not installed): {self.hint}")
        else:
            super().__init__(f"{module} is not installed (the '{extra}' extra): {self.hint}")
