"""Faults under a running ``thinkling serve``: signals with streams in flight, the
model file deleted or replaced underneath, and clients that hold connections
without finishing a request. Each starts the real server on loopback.

No timing assertions beyond generous bounds on "it ended" (shared machines).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.test_server import CAP, COUNTING, start_server

EXIT_BOUND_S = 60  # a signalled server must be gone within this (it takes ~1 s when healthy)


def _raw_post(port: int, path: str, body: dict) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    data = json.dumps(body).encode()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    s.settimeout(120)
    return s


def _read_all(s: socket.socket, box: dict, key: str) -> None:
    """Everything the server sends until it closes (bounded by the socket timeout)."""
    received = b""
    try:
        while part := s.recv(65536):
            received += part
    except OSError as e:  # a reset is what the test must not see; kept for the assertion
        box[key + ":error"] = repr(e)
    box[key] = received
    s.close()


def _complete_stream(raw: bytes) -> bool:
    """A whole SSE response: the [DONE] event, then the chunked body's closing zero-length chunk."""
    return raw.startswith(b"HTTP/1.1 200") and raw.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_streams_in_flight_ends_every_request_cleanly(tmp_path, sig):
    """One stream running, two waiting (one streaming, one not): after the signal each
    ends with a terminal event and [DONE], or a complete error response; the process
    exits 0 within the bound and logs no traceback."""
    srv = start_server(tmp_path / "server.log", "--max-tokens-cap", str(CAP), "--queue-size", "4")
    stream = {"prompt": COUNTING, "max_tokens": CAP, "temperature": 0, "stream": True}
    running = _raw_post(srv.port, "/v1/completions", stream)
    first = b""
    while b"data: " not in first:
        first += running.recv(4096)
    waiting = {"stream": _raw_post(srv.port, "/v1/completions", stream),
               "plain": _raw_post(srv.port, "/v1/chat/completions",
                                  {"messages": [{"role": "user", "content": "Count to fifty."}], "max_tokens": CAP})}
    srv.wait_for(lambda: httpx.get(srv.url + "/health").json()["queue_depth"] == 3, "both to queue", 60)
    box: dict = {}
    readers = [threading.Thread(target=_read_all, args=(s, box, k)) for k, s in
               [("running", running), *waiting.items()]]
    for t in readers:
        t.start()
    signalled = time.monotonic()
    srv.proc.send_signal(sig)
    # SIGINT ends in KeyboardInterrupt, which `thinkling serve` turns into 0; uvicorn re-raises
    # SIGTERM after its shutdown, so the process reports it (exit 143 to a shell), as supervisors expect.
    assert srv.proc.wait(EXIT_BOUND_S) == (0 if sig == signal.SIGINT else -signal.SIGTERM)
    exited_s = time.monotonic() - signalled
    for t in readers:
        t.join(EXIT_BOUND_S)
        assert not t.is_alive(), "a client still waits after the server exited"
    assert not [k for k in box if k.endswith(":error")], box
    running_out = first + box["running"]
    assert _complete_stream(running_out) and b'"native_finish_reason":"cancelled"' in running_out, running_out[-300:]
    # a queued stream never started: its headers go out with the cancelled final event
    assert _complete_stream(box["stream"]), box["stream"][-300:]
    # a queued non-streaming request: a complete 503 body, then the close
    head, _, payload = box["plain"].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and json.loads(payload)["error"]["code"] == "model_not_ready", box["plain"]
    assert exited_s < EXIT_BOUND_S
    log = srv.log.read_text()
    assert "Application shutdown complete" in log and "Traceback" not in log, log[-3000:]


@pytest.fixture
def copied_model(tmp_path, default_model_path):
    path = tmp_path / "model.gguf"
    shutil.copyfile(default_model_path, path)
    return path


def _chat(srv, **kw) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0, **kw}
    return httpx.post(srv.url + "/v1/chat/completions", json=body, timeout=120)


@pytest.mark.parametrize("how", ["delete", "rename_over", "overwrite_in_place"])
def test_model_file_changed_under_a_running_server(tmp_path, copied_model, how):
    """The loaded model keeps answering (identically) after its file is deleted, replaced by
    a rename, or overwritten in place with other bytes; the server never crashes."""
    srv = start_server(tmp_path / "server.log", "--model", str(copied_model))
    try:
        before = _chat(srv)
        assert before.status_code == 200
        if how == "delete":
            copied_model.unlink()
        elif how == "rename_over":
            other = tmp_path / "other.gguf"
            other.write_bytes(b"GGUF" + b"\0" * 4096)
            other.replace(copied_model)
        else:  # `cp other model.gguf`: the same inode truncated and rewritten
            with open(copied_model, "r+b") as f:
                f.truncate(0)
                f.write(b"not a model any more")
        for _ in range(3):
            after = _chat(srv)
            assert after.status_code in (200, 503), after.text
            if after.status_code == 200:
                assert after.json()["choices"][0]["message"] == before.json()["choices"][0]["message"]
            else:
                assert after.json()["error"]["code"] == "model_file_changed", after.text
        assert srv.proc.poll() is None, srv.log.read_text()[-3000:]
        assert httpx.get(srv.url + "/health", timeout=30).status_code in (200, 503)
    finally:
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(EXIT_BOUND_S) == 0
    assert "Traceback" not in srv.log.read_text()


def _open(port: int, first_bytes: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    if first_bytes:
        s.sendall(first_bytes)
    return s


def _closed_by_server(s: socket.socket, limit_s: float) -> bytes | None:
    """What the server sent before closing ``s``; None if it is still open after ``limit_s``."""
    s.settimeout(limit_s)
    received = b""
    try:
        while part := s.recv(4096):
            received += part
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_slow_and_idle_clients_do_not_stop_others(tmp_path):
    """200 idle connections, 20 that stall inside their request head and one that stalls
    inside its body: another client is still served at once, the stalled body gets a
    408 after --body-timeout, the rest are closed after --header-timeout, and the
    server's open file descriptors come back down."""
    import psutil

    srv = start_server(tmp_path / "server.log", "--body-timeout", "5", "--header-timeout", "10")
    fds_before = psutil.Process(srv.proc.pid).num_fds()
    try:
        idle = [_open(srv.port) for _ in range(200)]
        heads = [_open(srv.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
                 for _ in range(20)]
        body = _open(srv.port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                               b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": [")
        srv.wait_for(lambda: psutil.Process(srv.proc.pid).num_fds() >= fds_before + 200, "the server to accept", 30)
        served = _chat(srv)  # the server is not held up by any of them
        assert served.status_code == 200, served.text
        refused = _closed_by_server(body, 60)
        assert refused is not None and refused.startswith(b"HTTP/1.1 408"), refused
        assert json.loads(refused.partition(b"\r\n\r\n")[2])["error"]["code"] == "body_timeout"
        for s in heads + idle:
            assert _closed_by_server(s, 60) == b""
            s.close()
        srv.wait_for(lambda: psutil.Process(srv.proc.pid).num_fds() <= fds_before + 5, "fds to be released", 60)
        assert _chat(srv).status_code == 200
    finally:
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(EXIT_BOUND_S) == 0
    assert "Traceback" not in srv.log.read_text()
