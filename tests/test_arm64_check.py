"""The pure parts of ``scripts/arm64-check``: the parity comparison and the
emulation fact every bench record carries. (The check itself runs aarch64
under qemu for most of an hour; it is not part of the suite.)"""

import importlib.util
from pathlib import Path

import pytest

from thinkling.bench.fingerprint import isa_emulation

_spec = importlib.util.spec_from_file_location(
    "arm64_compare", Path(__file__).resolve().parent.parent / "scripts" / "arm64_compare.py")
cmp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cmp)


def run(tokens, tops, prompt="p"):
    return {"prompt": prompt, "tokens": tokens, "top": tops, "text": ""}


def test_identical_runs_report_the_largest_logit_difference():
    a = run([5, 7], [[[5, 3.0], [7, 1.0]], [[7, 2.0], [1, 0.5]]])
    b = run([5, 7], [[[5, 3.25], [7, 1.0]], [[7, 2.0], [9, 1.9]]])
    row = cmp.compare_run(a, b)
    assert row["identical"] and row["first_divergence"] is None
    assert row["max_abs_dlogit"] == 0.25  # id 9 is only in b's top-k: not compared
    assert "gap_ref" not in row


def test_first_divergence_and_the_gap_on_both_sides():
    a = run([5, 7, 2], [[[5, 3.0]], [[7, 2.0], [8, 1.9]], [[2, 1.0]]])
    b = run([5, 8, 4], [[[5, 3.0]], [[8, 2.05], [7, 2.0]], [[4, 1.0]]])
    row = cmp.compare_run(a, b)
    assert (row["identical"], row["first_divergence"]) == (False, 1)
    assert (row["token_ref"], row["token_other"]) == (7, 8)
    assert row["gap_ref"] == pytest.approx(0.1) and row["gap_other"] == pytest.approx(0.05)
    assert row["max_abs_dlogit"] == pytest.approx(0.15)  # id 8 at the divergent step
    assert row["verdict"] == "near tie"


def test_a_token_outside_the_kept_logits_has_no_gap_and_a_shorter_run_diverges():
    a = run([5, 7], [[[5, 3.0]], [[7, 2.0]]])
    b = run([5, 9], [[[5, 3.0]], [[9, 2.0]]])
    row = cmp.compare_run(a, b)
    assert row["first_divergence"] == 1 and row["gap_ref"] is None and row["gap_other"] is None
    assert row["verdict"] == "different"  # the other token is not even among the top logits
    short = cmp.compare_run(a, run([5], [[[5, 3.0]]]))
    assert (short["identical"], short["first_divergence"]) == (False, 1)


def test_compare_needs_every_run_and_mode_to_match():
    think = {"model": "m", "question": "q", "mode": "on", "text": "4", "reasoning": "2 + 2 = 4", "format_ok": True}
    rec = {"versions": {}, "seconds": {}, "think": [think],
           "models": {"m": {"backend": "llama_cpp", "runs": [run([1, 2], [[[1, 1.0]], [[2, 1.0], [3, 0.95]]])]}}}
    assert cmp.compare(rec, rec)["all_identical"] and cmp.compare(rec, rec)["ok"]
    tie = {**rec, "models": {"m": {"backend": "llama_cpp", "runs": [run([1, 3], [[[1, 1.0]], [[3, 1.0], [2, 0.9]]])]}}}
    table = cmp.compare(rec, tie)
    assert not table["all_identical"] and table["ok"] and table["models"]["m"]["rows"][0]["verdict"] == "near tie"
    other = {**rec, "think": [{**think, "text": "5"}]}
    table = cmp.compare(rec, other)
    assert not table["all_identical"] and not table["ok"] and table["think"][0]["same_output"] is False
    assert "**no**" in cmp.markdown(table, "x86", "arm")
    assert not cmp.compare(rec, {**rec, "models": {}})["all_identical"]


@pytest.mark.parametrize("mode,text,reasoning,order,ok", [
    ("off", " 76", "", ["text"], True),
    ("off", "76", "37 + 48 = 85", ["reasoning", "text"], False),
    ("on", "76", "4 * 12 = 48\n37 + 48 = 85\n85 - 9 = 76\n", ["reasoning", "text"], True),
    ("on", "76", "I think it is 76", ["reasoning", "text"], False),
    ("post", "37", "7 * 3 = 21", ["text", "reasoning"], True),
    ("post", "37", "7 * 3 = 21", ["reasoning", "text"], False),
])
def test_think_formats(mode, text, reasoning, order, ok):
    assert cmp.think_format_ok(mode, text, reasoning, order) is ok


def test_isa_emulation_is_detected_from_cpuinfo():
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse sse2 avx2\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU implementer\t: 0x41\n"
    assert "qemu-user" in isa_emulation("aarch64", x86)
    assert "ARM CPU" in isa_emulation("x86_64", arm)
    assert isa_emulation("aarch64", arm) is None and isa_emulation("x86_64", x86) is None
    assert isa_emulation("aarch64", "") is None  # nothing known: no claim


def test_the_emulated_label_survives_the_printed_table():
    """rich reads [brackets] as markup: the label of the committed emulated record must
    still head the printed table, not vanish from it."""
    import io
    import json

    from thinkling.bench.report import markdown_summary, print_report

    path = Path(__file__).resolve().parent.parent / "bench" / "results" / "arm64" / "latency-aarch64-emulated.json"
    record = json.loads(path.read_text())
    out = io.StringIO()
    print_report(record, out)
    assert "[aarch64 under qemu-user on x86-64: emulated, not phone numbers]" in out.getvalue()
    assert "emulated, not phone numbers" in markdown_summary(record)
    record["fingerprint"]["machine"]["isa_emulation"] = isa_emulation("aarch64", "flags : sse2\n")
    assert "EMULATED ISA" in markdown_summary(record)
