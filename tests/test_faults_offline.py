"""Faults without a server: ``thinkling convert`` killed mid-write or out of disk, and
the mobile bridge told ``memory_pressure("critical")`` while a generation streams."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import thinkling.mobile_bridge as mb

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "convert"


def _convert(src, out: Path, *extra: str, preexec=None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "thinkling.runtime.cli", "convert", str(src), "--out", str(out), *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)


def _models_in(out: Path) -> list[str]:
    """What a reader of ``out`` would take for an output: anything not hidden."""
    return sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def test_convert_killed_mid_write_leaves_no_model_and_the_next_run_succeeds(tmp_path, default_model_path):
    out = tmp_path / "out"
    proc = _convert(default_model_path, out, "--gguf", "q4_k_m", "--name", "m")
    end = time.monotonic() + 300
    while time.monotonic() < end and proc.poll() is None:  # kill once the temporary file has bytes
        partial = list(out.glob(".*.partial")) if out.exists() else []
        if partial and partial[0].stat().st_size > 0:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the conversion finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    proc.stdout.close()
    proc.stderr.close()
    assert _models_in(out) == []  # no .gguf, no manifest: only the hidden temporary file
    again = _convert(default_model_path, out, "--gguf", "q4_k_m", "--name", "m")
    stdout, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert _models_in(out) == ["m-q4_k_m.gguf", "manifest.json"]
    assert not list(out.glob(".*.partial")), "the dead run's temporary file was not swept"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"][0]["size_bytes"] == (out / "m-q4_k_m.gguf").stat().st_size


def _file_size_limit(nbytes: int):
    def preexec() -> None:  # in the child only: a full disk after nbytes of any one file
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return preexec


@pytest.mark.parametrize("source", ["gguf", "hf"])
def test_convert_on_a_full_disk_fails_in_one_line_and_leaves_nothing(tmp_path, source):
    """RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG. The GGUF
    source is written by llama.cpp's quantizer, the HF source by gguf-py."""
    if source == "gguf":  # the toy student: 0.9 MB, far past the limit, converted in a moment
        src, extra = REPO / "distill/artifacts/arith-student/gguf/arith-student-q8_0.gguf", ["--gguf", "q8_0"]
    else:
        src, extra = FIXTURES / "llama-spm" / "base", ["--gguf", "f32"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("the user's file")
    proc = _convert(src, out, *extra, "--name", "m", preexec=_file_size_limit(64 * 1024))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("thinkling: error:"), stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    again = _convert(src, out, *extra, "--name", "m")
    _, stderr = again.communicate(timeout=600)
    assert again.returncode == 0, stderr
    assert "manifest.json" in _models_in(out)


# --- the mobile bridge ---------------------------------------------------------------

LOAD = {"model": "gemma-3-270m", "n_ctx": 512, "threads": 2, "queue_size": 2}
TERMINAL = {"done", "error", "cancelled"}


def _call(fn, *args) -> dict:
    reply = json.loads(fn(*args))
    assert reply["v"] == 1
    return reply


def test_bridge_memory_pressure_while_streaming_to_a_callback():
    """Events go to a callback (how the apps use it): the running stream and the queued
    one each get exactly one terminal event; later calls answer not_loaded; a reload works."""
    events: list[dict] = []
    lock = threading.Condition()

    def on_event(text: str) -> None:
        with lock:
            events.append(json.loads(text))
            lock.notify_all()

    def terminal(rid: str) -> list[dict]:
        return [e for e in events if e.get("request_id") == rid and e["type"] in TERMINAL]

    _call(mb.load_model, json.dumps(LOAD))
    try:
        _call(mb.set_callback, on_event)
        body = {"messages": [{"role": "user", "content": "Write a long story about a dragon."}],
                "max_tokens": 200, "temperature": 0.8, "seed": 1}
        running = _call(mb.generate, json.dumps(body))["request_id"]
        queued = _call(mb.generate, json.dumps(body))["request_id"]
        with lock:
            assert lock.wait_for(lambda: any(e.get("request_id") == running for e in events), 120)
        reply = _call(mb.memory_pressure, '{"level": "critical"}')
        assert reply["unloaded"] is True
        with lock:
            assert lock.wait_for(lambda: terminal(running) and terminal(queued), 60), events[-5:]
        time.sleep(0.5)  # a second terminal event would arrive by now
        for rid in (running, queued):
            ends = terminal(rid)
            assert len(ends) == 1 and ends[0]["type"] == "cancelled" and ends[0]["reason"] == "memory_pressure", ends
        for fn in (mb.generate, mb.complete):
            assert _call(fn, json.dumps(body))["error"]["code"] == "not_loaded"
        assert _call(mb.load_model, json.dumps(LOAD))["already_loaded"] is False
        small = {**body, "max_tokens": 2}
        assert _call(mb.complete, json.dumps(small))["finish_reason"] in ("length", "stop")
    finally:
        _call(mb.set_callback, None)
        _call(mb.shutdown)
