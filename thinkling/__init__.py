"""thinkling: run small distilled reasoning students on-device.

The project's code installs under this one import name; the folders at the top of the
checkout are its subpackages (``thinkling.runtime``, ``thinkling.convert``,
``thinkling.bench``, ``thinkling.distill``, ``thinkling.mobile_bridge``). The runtime's
public entry points are re-exported here::

    from thinkling import Engine, GenerationRequest, Message
    with Engine("gemma-3-270m") as engine:
        for chunk in engine.stream(GenerationRequest(messages=[Message("user", "Hi")])):
            print(chunk.text, end="")
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = [
    "Engine", "EngineConfig", "EngineDescription", "Handle", "Decision", "ThinkMode", "Chunk", "GenerationRequest",
    "GenerationResult", "Message", "SamplingParams", "Timings", "ThinklingError", "ModelNotFound", "InvalidModelFile",
    "ContextLengthExceeded", "InvalidRequest", "Cancelled", "EngineBusy", "EngineClosed",
]


def __getattr__(name: str):
    # Lazy, so that `import thinkling.distill` or `thinkling.bench` does not load the engine
    # (and llama.cpp) before it needs it.
    if name in __all__:
        return getattr(importlib.import_module(".runtime", __name__), name)
    raise AttributeError(f"module 'thinkling' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
