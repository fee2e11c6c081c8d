"""thinkling.runtime.files: a file is written whole or not at all."""

from __future__ import annotations

import pytest

from thinkling.bench.files import write_text_atomic as bench_write
from thinkling.runtime.files import atomic_path, write_bytes_atomic, write_text_atomic


def test_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("old")
    write_text_atomic(p, "né\n")
    assert p.read_bytes() == "né\n".encode()
    write_bytes_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01" and bench_write is write_text_atomic
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]
