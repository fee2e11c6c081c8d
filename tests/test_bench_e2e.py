"""A tiny end-to-end `bench latency` on the embedded model: both profiles and
the baseline, two runs of one short class, then the files it wrote. Checks
structure only; no timing thresholds."""

from __future__ import annotations

import csv
import json
import os

import pytest

from thinkling.bench.cli import main

pytest.importorskip("matplotlib")


def test_bench_latency_end_to_end(tmp_path, default_model_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"name": "tiny", "text": "What is 2+2?", "max_tokens": 3, "verdict": true}\n')
    out_json, out_csv, out_png = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.png"
    cpus_before = os.sched_getaffinity(0)
    rc = main(["latency", "--prompts", str(prompts), "--runs", "2", "--warmup", "0", "--profile", "all",
               "--baseline", "--quiet", "--json", str(out_json), "--csv", str(out_csv), "--plot", str(out_png)])
    assert rc == 0
    assert os.sched_getaffinity(0) == cpus_before  # the phone profile's pinning was undone

    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads(out_json.read_text())
    assert r["schema"] == "thinkling.bench.latency/1"
    assert r["command"].startswith("bench latency --prompts")
    for key in ("config", "definitions", "load_average", "fingerprint", "profiles", "samples", "started_at"):
        assert key in r
    m = r["fingerprint"]["machine"]
    for key in ("cpu", "physical_cores", "isa_flags", "memory_bytes", "os", "python", "llama_cpp"):
        assert key in m
    model = r["fingerprint"]["model"]
    assert len(model["sha256"]) == 64 and model["quantization"] and model["path"] == str(default_model_path)
    assert len(r["load_average"]["start"]) == 3

    assert [p["name"] for p in r["profiles"]] == ["laptop", "phone"]
    for prof in r["profiles"]:
        assert isinstance(prof["verdict"]["pass"], bool) and prof["verdict"]["classes"] == ["tiny"]
        assert prof["load_ms"] > 0 and prof["peak_rss_bytes"] > 0 and prof["rss_at_start_bytes"] > 0
        assert prof["peak_rss_with_baseline_bytes"] >= prof["peak_rss_bytes"]  # the peak only rises
        assert len(prof["load_average"]["rounds"]) == 2
        (cls,) = prof["classes"]
        assert set(cls["runners"]) == {"thinkling", "llama-cpp-python"}
        assert cls["runners"]["thinkling"]["ttft_ms"]["n"] == 2
        assert cls["overhead"]["pairs"] == 2 and cls["overhead"]["same_output"] is True
    assert r["profiles"][1]["emulated"] is True and r["profiles"][1]["settings"]["cpu_affinity"]

    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 2 * 2 * 2  # profiles x runners x runs
    for row in rows:
        assert row["cached_tokens"] == "0"  # cold prefix on both sides
        assert int(row["completion_tokens"]) <= 3


def test_bench_contend_end_to_end(tmp_path, capsys):
    out = tmp_path / "c.json"
    assert main(["contend", "--cases", "none,spin", "--case-seconds", "0.1", "--requests", "2", "--max-tokens", "3",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert list(r["cases"]) == ["none", "spin"]
    assert r["cases"]["spin"]["busy_processes"] == 1 and r["cases"]["spin"]["busy_kind"] == "spin"
    for case in r["cases"].values():
        phase = case["policies"]
        assert set(phase) == {"fixed", "adaptive"} and all(1 <= s["n"] <= 2 for s in phase.values())
        assert all(s["requests_per_min"] > 0 and s["ttft_p50_ms"] > 0 for s in phase.values())
        assert phase["adaptive"]["threads_at_end"]["policy"] == "adaptive"
        assert phase["fixed"]["threads_at_end"]["policy"] == "fixed"
    assert "threads at end" in capsys.readouterr().out
    import multiprocessing

    assert not multiprocessing.active_children()  # the busy processes were stopped
    assert main(["contend", "--cases", "nothing"]) == 2  # an unknown case is one line, not a traceback
    assert main(["contend", "--requests", "0"]) == 2  # a bad flag is one line, not a traceback


def test_spinners_hold_one_pinned_core_each():
    import os

    from thinkling.bench.contend import _spin_core, busy_processes

    with busy_processes(2, "spin", settle_s=0.5) as procs:
        held = [os.sched_getaffinity(p.pid) for p in procs]
    assert held == [{_spin_core(0)}, {_spin_core(1)}]
    assert len(os.sched_getaffinity(0)) < 2 or held[0] != held[1]
