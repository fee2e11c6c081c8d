"""A ``thinkling serve`` (or any OpenAI-compatible server) on loopback, for the benchmarks
that drive one over HTTP (``bench soak``, ``bench http-cost``)."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 600.0,
                 hint: str = "") -> None:
    """Return once ``url``/health answers 200; ``ChildProcessError`` when ``proc`` (the
    server, if we started it) exits first or ``timeout_s`` passes (``proc`` is then killed)."""
    import httpx  # the test extra: imported where a measurement starts

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise ChildProcessError(f"the server exited with {proc.returncode} while loading{hint}")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    if proc is not None:
        proc.kill()
    raise ChildProcessError(f"the server at {url} did not become healthy within {timeout_s:.0f} s{hint}")
