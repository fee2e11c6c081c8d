"""The hand-written GGUF header reader (runtime/ggufheader.py) against gguf-py's own
``GGUFReader`` on the GGUF files thinkling ships: the embedded gemma-3-270m and the
registered arith-student. Every metadata key, every scalar value, every array's
length, every tensor's type, element count, byte size and offset, and where the data
section starts must agree. (gguf-py parses every array element, which is why the
runtime does not use it at load time; here its slowness buys an independent check.)
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGUFReader, GGUFValueType

from thinkling.runtime import models
from thinkling.runtime.ggufheader import read_header

SHIPPED = ["gemma-3-270m", "arith-student"]


def _reference_value(field):
    """gguf-py's view of one field in the reader's terms: arrays as ("array", length)."""
    if field.types[0] == GGUFValueType.ARRAY:
        return ("array", len(field.data))
    value = field.contents()
    return float(value) if isinstance(value, (float, np.floating)) else value


@pytest.mark.parametrize("name", SHIPPED)
def test_header_matches_gguf_py(name):
    path = models.resolve(name).path
    ours = read_header(path)
    ref = GGUFReader(path)

    fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}
    assert ours.version == ref.fields["GGUF.version"].contents()
    assert list(ours.metadata) == list(fields)
    for key, field in fields.items():
        mine, theirs = ours.metadata[key], _reference_value(field)
        if isinstance(theirs, float):
            assert mine == pytest.approx(theirs, rel=1e-7), key
        else:
            assert mine == theirs, key

    assert ours.data_start == ref.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for mine, theirs in zip(ours.tensors, ref.tensors):
        assert mine.ggml_type == int(theirs.tensor_type), mine.name
        assert mine.n_elements == int(theirs.n_elements), mine.name
        assert mine.n_bytes == int(theirs.n_bytes), mine.name
        assert ours.data_start + mine.offset == int(theirs.data_offset), mine.name
    assert ours.data_end <= path.stat().st_size
