"""The students' chat formats by name, as ``--chat`` picks them."""

from __future__ import annotations

from thinkling.distill.chat import ARITH_FORMAT, ChatFormat
from thinkling.distill.chatml import CHATML_FORMAT
from thinkling.distill.gemma_chat import GEMMA_FORMAT

FORMATS: dict[str, ChatFormat] = {"arith": ARITH_FORMAT, "gemma": GEMMA_FORMAT, "chatml": CHATML_FORMAT}
