"""Backends declare what they can do (``Capabilities``); the runtime reads the record and
never probes a backend for methods."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from scripted_backend import ScriptedManyBackend

from thinkling.runtime.speculative import SpeculativeConfig
from thinkling.runtime.steppers import PlainStepper, SpeculativeStepper, pick_stepper
from thinkling.runtime.types import Timings

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"


def test_no_backend_is_probed_for_attributes():
    probe = re.compile(r"\b(hasattr|getattr)\(\s*(self\.)?(backend|b)\b")
    hits = [f"{p.relative_to(RUNTIME)}:{i}" for p in RUNTIME.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert hits == []


@pytest.mark.parametrize("score_many,expected", [(True, SpeculativeStepper), (False, PlainStepper)])
def test_the_record_decides_the_stepper(score_many, expected):
    b = ScriptedManyBackend()  # has eval_many either way: only the record counts
    b.capabilities = replace(b.capabilities, score_many=score_many)
    pick = pick_stepper(b, SpeculativeConfig(), greedy=True, grammar=False, history=[1, 2], timings=Timings(),
                        costs=None)
    assert type(pick) is expected
    assert type(pick_stepper(b, SpeculativeConfig(), greedy=False, grammar=False, history=[], timings=Timings(),
                             costs=None)) is PlainStepper
