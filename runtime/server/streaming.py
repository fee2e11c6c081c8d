"""Bridging the engine's blocking handle to the event loop.

``Handle.get`` blocks, so it always runs in a worker thread (anyio's thread
pool), never on the loop. A client that goes away cancels its handle: while we
wait for the first chunk or a whole result, a watcher reads the ASGI
``http.disconnect``; while streaming, Starlette cancels the body iterator and
its ``finally`` cancels the handle. Either way the engine stops within a token.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..engine import Handle
from ..errors import ThinklingError

log = logging.getLogger(__name__)
T = TypeVar("T")


async def blocking_with_disconnect(request: Request, handle: Handle, fn: Callable[[], T],
                                   on_disconnect: Callable[[], None] = lambda: None) -> T:
    """Run ``fn`` (which blocks on ``handle``) in a thread; if the client
    disconnects meanwhile, cancel ``handle`` and call ``on_disconnect``.
    Returns what ``fn`` returned and re-raises what it raised."""
    outcome: dict[str, Any] = {}

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                handle.cancel()
                on_disconnect()
                return

    async def run(cancel_scope: anyio.CancelScope) -> None:
        try:
            outcome["value"] = await anyio.to_thread.run_sync(fn)
        except Exception as e:  # re-raised below, outside the task group
            outcome["error"] = e
        finally:
            cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        tg.start_soon(run, tg.cancel_scope)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def next_chunk(handle: Handle):
    """The handle's next chunk from a thread. If this await is cancelled (client
    gone) the thread is abandoned; it returns as soon as the cancelled engine
    delivers its last chunk."""
    return await anyio.to_thread.run_sync(handle.get, abandon_on_cancel=True)


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False,
                                                               separators=(",", ":"))
    return f"data: {data}\n\n".encode("utf-8")


class EventStream(StreamingResponse):
    """Server-sent events whose iterator is always closed, so its ``finally``
    (cancel the generation) runs even when the client vanished mid-send."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes]):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (ClientDisconnect, OSError):
            log.debug("client went away mid-stream")
        finally:
            await self.body_iterator.aclose()


def stream_error_event(exc: BaseException) -> bytes:
    """An error after the headers went out is reported in-band (OpenAI does the same)."""
    from .errors import error_body, runtime_error_body

    if isinstance(exc, ThinklingError):
        _, body, _ = runtime_error_body(exc)
    else:
        log.error("generation failed mid-stream", exc_info=exc)
        body = error_body("internal error during generation", 500, code="internal_error")
    return sse(body)
