"""thinkling runtime: run small distilled reasoning students on-device.

Public entry points::

    from thinkling.runtime import Engine, EngineConfig, GenerationRequest, Message, SamplingParams
    with Engine("gemma-3-270m") as engine:
        for chunk in engine.stream(GenerationRequest(messages=[Message("user", "Hi")])):
            print(chunk.text, end="")

Layers (data flows one way): edges -> ``api`` (the request layer) -> ``engine``
-> ``thinking`` -> ``generate`` -> ``backends``.
"""

from .engine import Engine, EngineConfig, EngineDescription, Handle
from .errors import (Cancelled, ContextLengthExceeded, EngineBusy, EngineClosed, InvalidModelFile,
                     InvalidRequest, ModelNotFound, ThinklingError)
from .thinking import Decision
from .types import Chunk, GenerationRequest, GenerationResult, Message, SamplingParams, ThinkMode, Timings

__version__ = "0.1.0"

__all__ = [
    "Engine", "EngineConfig", "EngineDescription", "Handle", "Decision", "ThinkMode", "Chunk", "GenerationRequest", "GenerationResult", "Message",
    "SamplingParams", "Timings", "ThinklingError", "ModelNotFound", "InvalidModelFile",
    "ContextLengthExceeded", "InvalidRequest", "Cancelled", "EngineBusy", "EngineClosed",
]
