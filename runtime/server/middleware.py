"""Pure ASGI middleware: checks that run before any route (so an unauthenticated
or oversized request never reaches body parsing), and request counting."""

from __future__ import annotations

import hmac

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response
from .metrics import Metrics, endpoint_label

# The playground's files and their types (a fixed list: no path from the URL reaches the file system).
PLAYGROUND = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
              "style.css": "text/css; charset=utf-8"}
# No key needed: the health probe, and the playground's static page (it holds no data;
# every API call it makes carries the key the user types into it, as llama-server's UI does).
PUBLIC_PATHS = frozenset({"/health", "/", *(f"/playground/{name}" for name in PLAYGROUND)})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _hostname(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Guard:
    """Host allow-list, Bearer auth, body size, JSON content type and UTF-8.

    The body is read here (bounded by ``max_body``) and replayed to the app,
    which also makes a chunked upload obey the limit.
    """

    def __init__(self, app: ASGIApp, *, api_key: str | None, allowed_hosts: list[str] | None, max_body: int,
                 body_timeout_s: float = 30.0):
        self.app = app
        self.key = api_key.encode("utf-8") if api_key else None
        self.hosts = frozenset(allowed_hosts) if allowed_hosts else None
        self.max_body = max_body
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._check_host(headers) or self._check_auth(scope, headers)
        if refusal is None and scope["method"] in _BODY_METHODS:
            refusal, receive = await self._read_body(headers, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check_host(self, headers: Headers):
        host = headers.get("host")
        if self.hosts is None or host is None or _hostname(host) in self.hosts:
            return None
        return error_response(400, f"Host header {host!r} is not allowed (see allowed_hosts)",
                              code="invalid_host")

    def _check_auth(self, scope: Scope, headers: Headers):
        if self.key is None or scope["path"] in PUBLIC_PATHS:
            return None
        raw = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = raw.partition(b" ")
        # compare_digest on bytes: time does not depend on where the keys differ
        if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key):
            return None
        message = "missing API key" if not raw else "invalid API key"
        return error_response(401, f"{message}: send 'Authorization: Bearer <key>'", code="invalid_api_key",
                              headers={"WWW-Authenticate": "Bearer"})

    async def _read_body(self, headers: Headers, receive: Receive):
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return self._too_large(), receive
        parts, size = [], 0
        # A client trickling its body would otherwise hold its connection (and this
        # coroutine) for as long as it likes; uvicorn has no body-read timeout.
        try:
            with anyio.fail_after(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None, _replay(b"", receive, disconnected=True)
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return self._too_large(), receive
                    parts.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            return error_response(408, f"the request body did not arrive within {self.body_timeout_s:g} s",
                                  code="body_timeout", headers={"Connection": "close"}), receive
        body = b"".join(parts)
        if body:
            content_type = headers.get("content-type", "")
            if not _is_json(content_type):
                return error_response(415, f"Content-Type must be application/json, got {content_type or 'none'!r}",
                                      code="unsupported_media_type"), receive
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as e:
                return error_response(400, f"request body is not valid UTF-8 (byte {e.start})",
                                      code="invalid_utf8"), receive
        return None, _replay(body, receive)

    def _too_large(self):
        return error_response(413, f"request body exceeds {self.max_body} bytes", code="request_too_large")


def _replay(body: bytes, receive: Receive, disconnected: bool = False) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one."""
    pending = True

    async def replay():
        nonlocal pending
        if pending:
            pending = False
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class CountRequests:
    """``thinkling_http_requests_total{endpoint, status}`` for every response,
    including the ones the Guard refused."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(endpoint_label(scope["path"]), str(status)).inc()
