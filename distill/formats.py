"""The students' chat formats by name, as ``--chat`` picks them."""

from __future__ import annotations

from distill.chat import ARITH_FORMAT, ChatFormat
from distill.chatml import CHATML_FORMAT
from distill.gemma_chat import GEMMA_FORMAT

FORMATS: dict[str, ChatFormat] = {"arith": ARITH_FORMAT, "gemma": GEMMA_FORMAT, "chatml": CHATML_FORMAT}
