"""The llama.cpp load settings: every ctypes field we write exists in the
installed llama-cpp-python, the AMX guard decides as documented, and a real
evaluation (engine and bench baseline) survives on this machine.

The real evaluations run in a child process: on a CPU whose AMX kernels fault
the child dies with SIGILL, which a test can report, instead of pytest itself.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import llama_cpp.llama_cpp as C  # noqa: N812

from thinkling.runtime.backends import llama_cpp as lc

ROOT = Path(__file__).resolve().parent.parent


def _field_names(struct_type) -> set[str]:
    return {f[0] for f in struct_type._fields_}


def test_every_model_and_context_field_we_write_exists():
    assert set(lc.model_param_values()) <= _field_names(C.llama_model_params)
    assert set(lc.context_param_values(512, 64, 2)) <= _field_names(C.llama_context_params)


def test_set_fields_refuses_a_field_the_structure_lacks():
    params = C.llama_model_default_params()
    before = bytes(memoryview(params))
    with pytest.raises(TypeError, match="use_mmap"):
        lc.set_fields(params, {"use_mmap": True})  # the field older llama-cpp-python had
    assert bytes(memoryview(params)) == before
    lc.set_fields(params, {"vocab_only": True})
    assert params.vocab_only is True


@pytest.mark.parametrize("setting,expected", [("on", True), ("1", True), ("off", False), ("false", False)])
def test_the_setting_overrides_the_guard(monkeypatch, setting, expected):
    monkeypatch.setenv(lc.EXTRA_BUFFERS_ENV, setting)
    assert lc.extra_buffers_policy()[0] is expected
    assert lc.model_param_values() == {"use_extra_bufts": expected}


@pytest.mark.parametrize("setting", ["auto", "", "sometimes"])
def test_auto_turns_extra_buffers_off_exactly_when_the_build_has_amx(monkeypatch, setting):
    monkeypatch.setenv(lc.EXTRA_BUFFERS_ENV, setting)
    has_amx = "AMX_INT8 = 1" in C.llama_print_system_info().decode()
    assert lc.build_has_amx() is has_amx
    enabled, why = lc.extra_buffers_policy()
    assert enabled is (not has_amx) and why.startswith("auto")
    assert ("off" if has_amx else "on") in lc.build_info()


def _child(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(lc.EXTRA_BUFFERS_ENV, None)  # the default a user gets
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def _assert_survived(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != -signal.SIGILL, "llama.cpp died with SIGILL (Illegal instruction)"
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_real_evaluation_survives_with_the_default_settings():
    proc = _child(
        "from runtime import Engine, EngineConfig, GenerationRequest, SamplingParams\n"
        "with Engine('gemma-3-270m', EngineConfig(n_ctx=256, n_threads=2)) as e:\n"
        "    r = e.generate(GenerationRequest(prompt='The capital of France is', max_tokens=4,\n"
        "                   sampling=SamplingParams(temperature=0)))\n"
        "    print(r.timings.completion_tokens)\n")
    _assert_survived(proc)
    assert int(proc.stdout.split()[-1]) >= 1


def test_the_bench_baseline_loads_with_the_same_guard(default_model_path):
    proc = _child(
        "import llama_cpp.llama_cpp as C\n"
        "from bench.runners.baseline import _thinkling_model_params\n"
        "from llama_cpp import Llama\n"
        "original = C.llama_model_default_params\n"
        "with _thinkling_model_params():\n"
        f"    llm = Llama(model_path={str(default_model_path)!r}, n_ctx=256, n_threads=2, verbose=False)\n"
        "    print('inside', llm.model_params.use_extra_bufts)\n"
        "assert C.llama_model_default_params is original\n"
        "out = llm.create_completion('The capital of France is', max_tokens=3, temperature=0)\n"
        "print('tokens', out['usage']['completion_tokens'])\n"
        "llm.close()\n")
    _assert_survived(proc)
    inside = proc.stdout.split("inside ")[1].split()[0]
    assert inside == str(lc.extra_buffers_policy()[0])
    assert int(proc.stdout.split("tokens ")[1].split()[0]) >= 1


def test_ctypes_assignment_to_an_unknown_field_is_silent_which_is_why_set_fields_exists():
    """The trap this guards against: plain assignment 'works' and changes nothing in C."""
    params = C.llama_model_default_params()
    before = bytes(memoryview(params))
    params.use_mmap = True  # no such field in this llama-cpp-python: a Python attribute only
    assert bytes(memoryview(params)) == before
    assert "use_mmap" not in _field_names(C.llama_model_params)
    assert ctypes.sizeof(params) == len(before)
