"""The `thinkling` CLI as a user runs it: a real subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "thinkling.runtime.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_ask_json_has_documented_keys():
    p = run("ask", "The sky is", "--raw", "--json", "--temperature", "0", "--max-tokens", "5",
            "--threads", "2", "--ctx", "256")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"text", "tokens", "finish_reason", "model", "timings"} <= out.keys()
    assert out["model"] == "gemma-3-270m" and len(out["tokens"]) == 5
    assert {"ttft_ms", "decode_tok_s", "load_ms", "prompt_tokens", "cached_tokens", "prompt_ms",
            "completion_tokens", "total_ms"} <= out["timings"].keys()


def test_ask_streams_text_and_prints_timings():
    p = run("ask", "Hello", "--temperature", "0", "--max-tokens", "4", "--threads", "2", "--ctx", "256")
    assert p.returncode == 0, p.stderr
    assert "ttft=" in p.stderr and "decode=" in p.stderr


@pytest.mark.parametrize("args,code", [
    (["ask", "hi", "--model", "no-such-model"], 3),
    (["ask", "hi", "--model", "/tmp/definitely/missing.gguf"], 3),
    (["ask", "hi", "--max-tokens", "0"], 2),
])
def test_error_paths_exit_nonzero_without_traceback(args, code):
    p = run(*args)
    assert p.returncode == code
    assert "Traceback" not in p.stderr and p.stderr.startswith("thinkling: error:")
    assert len(p.stderr.strip().splitlines()) == 1


def test_ask_json_schema_answer_validates(tmp_path):
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    (tmp_path / "answer.json").write_text(json.dumps(schema))
    p = run("ask", "What is 2 + 2?", "--json", "--json-schema", str(tmp_path / "answer.json"), "--think", "off",
            "--temperature", "0", "--max-tokens", "40", "--threads", "2", "--ctx", "256")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["finish_reason"] == "stop" and isinstance(json.loads(out["text"])["answer"], int), out


@pytest.mark.parametrize("content, says", [
    (None, "cannot read"), ("{not json", "is not JSON"),
    ('{"type": "integer", "minimum": 3}', "$.minimum"),
])
def test_ask_bad_json_schema_file_is_one_line_error(tmp_path, content, says):
    path = tmp_path / "schema.json"
    if content is not None:
        path.write_text(content)
    p = run("ask", "hi", "--json-schema", str(path))
    assert p.returncode == 2 and "Traceback" not in p.stderr and says in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_truncated_model_file_is_one_line_error(tmp_path, default_model_path):
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(default_model_path.read_bytes()[:10_000_000])
    p = run("ask", "hi", "--model", str(bad))
    assert p.returncode == 4 and "Traceback" not in p.stderr and "invalid model file" in p.stderr


def test_models_lists_default_with_metadata():
    p = run("models", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads(p.stdout)}
    g = rows["gemma-3-270m"]
    assert g["architecture"] == "gemma3" and g["quantization"] == "Q4_K_M"
    assert 250e6 < g["parameters"] < 300e6 and g["size_bytes"] > 0
    # ONNX entries: their facts come from the converter's manifest beside the .onnx file
    o = rows["arith-student-onnx-int4"]
    assert (o["format"], o["architecture"], o["quantization"]) == ("onnx", "llama", "int4")
    assert o["size_bytes"] > 0 and o["parameters"] is None and "error" not in o


def test_models_table_columns_line_up_past_long_names():
    p = run("models")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    arch_at = lines[0].index("ARCH")
    assert len(lines) >= 4
    for line in lines[1:]:
        name = line.split()[0]
        assert line[len(name):arch_at].strip() == "" and line[arch_at - 1] == " ", line


# A module set to None in sys.modules fails to import with ModuleNotFoundError,
# as an absent package does: these children see an install without that extra.
_WITHOUT = ("import sys\nfor m in {mods!r}: sys.modules[m] = None\n"
            "from {cli} import main\nsys.exit(main({argv!r}))\n")


@pytest.mark.parametrize("mods,cli,argv,extra", [
    (["fastapi", "uvicorn", "pydantic", "pydantic_settings"], "thinkling.runtime.cli", ["serve"], "serve"),
    (["onnxruntime", "onnx"], "thinkling.runtime.cli", ["ask", "1 + 1", "--model", "arith-student-onnx"], "onnx"),
    (["safetensors"], "thinkling.runtime.cli", ["convert", "x", "--out", "y"], "convert"),
    (["matplotlib"], "thinkling.bench.cli", ["latency", "--model", "arith-student", "--runs", "1", "--plot", "p.png"],
     "bench"),
    (["matplotlib"], "thinkling.bench.cli", ["modes", "--model", "arith-student", "--tasks", "arith-test", "--plot",
                                   "p.png"], "bench"),
])
def test_a_missing_extra_is_one_line_naming_it(tmp_path, mods, cli, argv, extra):
    code = _WITHOUT.format(mods=mods, cli=cli, argv=argv)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert p.returncode == 7, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert f"pip install 'thinkling[{extra}]'" in p.stderr
    assert not (tmp_path / "p.png").exists()
