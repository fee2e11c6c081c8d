"""Shared fixtures. Tests run the real llama.cpp on the real embedded model;
one engine per session keeps the suite fast on 2 cores."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def default_model_path():
    from thinkling.runtime import models

    return models.resolve(models.DEFAULT_MODEL).path


@pytest.fixture(scope="session")
def engine():
    """The embedded default model, loaded once for the whole session."""
    from thinkling.runtime import Engine, EngineConfig

    eng = Engine("gemma-3-270m", EngineConfig(n_ctx=1024, n_threads=int(os.environ.get("THINKLING_TEST_THREADS", "2")),
                                               queue_size=4))
    yield eng
    eng.close()
