"""The project as a user installs it: a wheel, in fresh virtual environments
outside the checkout, core-only and with every extra.

Slow (two venvs; pip takes llama-cpp-python's wheel from its cache, built once
by the README's install), but it is the only test that sees what a wheel
really contains and what a core install can import.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# what the copy of the checkout leaves out (build outputs, caches, venvs)
_IGNORE = shutil.ignore_patterns(".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__",
                                 ".pytest_cache", ".hypothesis", ".thinkling")


def _env(home: Path | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if home is not None:
        env["THINKLING_HOME"] = str(home)
    return env


def _run(cmd: list, cwd: Path, timeout: float = 600, env: dict | None = None, check: bool = True):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or _env(), stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of this working tree (the tree itself is not written)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", src], cwd=work)
    (whl,) = (work / "dist").glob("thinkling-*.whl")
    return whl


def _venv(path: Path, wheel: Path, extras: str = "") -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    spec = f"thinkling[{extras}] @ {wheel.as_uri()}" if extras else str(wheel)
    _run([path / "bin" / "python", "-m", "pip", "install", "-q", spec], cwd=path.parent, timeout=1200)
    return path / "bin"


@pytest.fixture(scope="module")
def home(tmp_path_factory, default_model_path) -> Path:
    """A THINKLING_HOME holding the already-assembled default model (linked, not copied)."""
    h = tmp_path_factory.mktemp("home")
    (h / "models").mkdir()
    (h / "models" / default_model_path.name).symlink_to(default_model_path)
    return h


def test_wheel_ships_the_registered_students(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in ("distill/artifacts/arith-student/gguf/arith-student-q8_0.gguf",
                "distill/artifacts/arith-student/gguf/manifest.json",
                "distill/artifacts/arith-student/gguf/arith-student-q8_0.gguf.thinking.json",
                "distill/artifacts/arith-student/onnx/arith-student-onnx-fp32/arith-student-fp32.onnx",
                "distill/artifacts/arith-student/onnx/arith-student-onnx-int4/tokenizer.json",
                "distill/artifacts/gemma-arith/student.json",
                "distill/artifacts/gemma-arith/adapter/adapter_model.safetensors",
                "distill/artifacts/gemma-arith/adapter/adapter_config.json",
                "convert/assemble.py", "bench/tasks/arith-test.jsonl", "runtime/server/app.py"):
        assert f"thinkling/{rel}" in names, rel
    # the arith-student's training weights and the f16 GGUF stay in the repository; the only
    # safetensors shipped are the adapters of registered students (runtime/registry.json),
    # each assembled with its base on first use, and every one committed here ships
    from thinkling.runtime.registry import load_table

    adapters = {f"{row.adapter}/adapter_model.safetensors" for row in load_table() if row.adapter}
    built = {a for a in adapters if (ROOT / a).is_file()}
    assert "thinkling/runtime/registry.json" in names
    assert "distill/artifacts/gemma-arith/adapter/adapter_model.safetensors" in built
    assert {n for n in names if n.endswith(".safetensors") or n.endswith("-f16.gguf")} == {
        f"thinkling/{a}" for a in built}


def test_wheel_installs_one_import_name(wheel):
    """The project's code is importable under `thinkling` only: no generic top-level names
    (`runtime`, `bench`, `convert` are other projects on PyPI) land in site-packages."""
    import zipfile

    zf = zipfile.ZipFile(wheel)
    names = zf.namelist()
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zf.read(top_level).decode().split() == ["thinkling"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"thinkling"}


def test_every_package_folder_is_listed_under_thinkling():
    """pyproject.toml names the packages one by one (a package-dir mapping cannot discover
    them): a new subpackage folder that is not listed would be missing from the wheel."""
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    on_disk = {"thinkling"}
    for top in ("runtime", "convert", "bench", "distill", "mobile_bridge"):
        assert cfg["package-dir"][f"thinkling.{top}"] == top
        on_disk |= {"thinkling." + ".".join(p.parent.relative_to(ROOT).parts)
                    for p in (ROOT / top).rglob("__init__.py")}
    assert listed == on_disk


def test_source_imports_the_project_under_one_name():
    """Every import of the project's own code goes through `thinkling.`: an import of a bare
    `runtime` would load a second copy of the module from a checkout, and fail from a wheel."""
    from source_imports import absolute_imports

    bare = ("runtime", "convert", "bench", "distill", "mobile_bridge")
    offenders = [f"{path}: {n}" for path, n in absolute_imports(*bare, "tests", "thinkling", "scripts")
                 if n.split(".")[0] in bare]
    assert offenders == []


def test_the_one_name_exports_the_runtime_entry_points():
    """``thinkling.__all__`` is written out (so that importing ``thinkling.distill`` does not
    load the engine): it must name exactly the runtime's public entry points, each resolving."""
    import thinkling
    import thinkling.runtime

    assert thinkling.__all__ == thinkling.runtime.__all__
    assert all(getattr(thinkling, name) is getattr(thinkling.runtime, name) for name in thinkling.__all__)


def test_core_install_runs_without_any_extra(wheel, home, tmp_path):
    bin_ = _venv(tmp_path / "core", wheel)
    env = _env(home)
    cwd = tmp_path  # outside the checkout: nothing can be imported from the source tree

    where = _run([bin_ / "python", "-c", "import thinkling.runtime, fastapi"], cwd, env=env, check=False)
    assert where.returncode != 0 and "No module named 'fastapi'" in where.stderr  # really core-only

    models = _run([bin_ / "thinkling", "models"], cwd, env=env)
    assert "arith-student" in models.stdout and "gemma-3-270m" in models.stdout
    assert "skills-student" in models.stdout  # a registry row, listed even before it is built

    ask = _run([bin_ / "thinkling", "ask", "The capital of France is", "--raw", "--max-tokens", "4",
                "--temperature", "0", "--json"], cwd, env=env)
    assert len(json.loads(ask.stdout)["tokens"]) >= 1

    student = _run([bin_ / "thinkling", "ask", "12 + 7", "--model", "arith-student", "--think", "on",
                    "--temperature", "0", "--json"], cwd, env=env)
    out = json.loads(student.stdout)
    assert out["reasoning"] and out["text"].strip() == "19"

    # the Gemma student is assembled on first use from the wheel's adapter, with core packages only
    gemma = _run([bin_ / "thinkling", "ask", "12 + 7", "--model", "gemma-3-270m-arith", "--think", "off",
                  "--temperature", "0", "--json"], cwd, env=env)
    assert json.loads(gemma.stdout)["text"].strip().isdigit(), gemma.stdout

    bridge = _run([bin_ / "python", "-c",
                   "import json, thinkling.mobile_bridge as mb\n"
                   "print(mb.load_model(json.dumps({'v': 1, 'model': 'arith-student', 'n_ctx': 256})))\n"
                   "print(mb.complete(json.dumps({'v': 1, 'messages': [{'role': 'user', 'content': '3 + 4'}],"
                   " 'think': 'on', 'temperature': 0})))\n"], cwd, env=env)
    loaded, reply = (json.loads(line) for line in bridge.stdout.splitlines()[-2:])
    assert "error" not in loaded and reply["text"].strip() == "7", bridge.stdout

    # the README's Python example, as written there, from the wheel's one import name
    readme = (ROOT / "README.md").read_text()
    example = readme.split("From Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    assert example.startswith("from thinkling import Engine")
    ran = _run([bin_ / "python", "-c", example], cwd, env=env)
    assert "total_ms" in ran.stdout, ran.stdout

    # a feature whose extra is missing: one line naming the extra, never a traceback
    for cmd, extra in (([bin_ / "thinkling", "serve"], "serve"),
                       ([bin_ / "thinkling", "ask", "1 + 1", "--model", "arith-student-onnx"], "onnx"),
                       ([bin_ / "bench", "latency", "--model", "arith-student", "--runs", "1",
                         "--plot", tmp_path / "x.png"], "bench")):
        proc = _run(cmd, cwd, env=env, check=False)
        assert proc.returncode == 7, (cmd, proc.stderr)
        assert "Traceback" not in proc.stderr and f"pip install 'thinkling[{extra}]'" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "x.png").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wheel_with_all_extras_serves_the_students(wheel, home, tmp_path):
    import httpx

    bin_ = _venv(tmp_path / "all", wheel, "all")
    env = _env(home)
    for model in ("arith-student", "arith-student-onnx"):
        port = _free_port()
        log = open(tmp_path / f"{model}.log", "w")
        server = subprocess.Popen([str(bin_ / "thinkling"), "serve", "--model", model, "--port", str(port)],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None, (tmp_path / f"{model}.log").read_text()
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not become healthy"
                time.sleep(0.5)
            r = httpx.post(url + "/v1/chat/completions", timeout=60, json={
                "model": model, "messages": [{"role": "user", "content": "20 + 5"}], "think": "on",
                "temperature": 0})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"].strip() == "25"
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
