"""One table of engine-load bounds (``runtime.api.limits.LOAD_LIMITS``): the server's
settings, the bridge's ``load_model`` options and ``EngineConfig`` refuse the same
out-of-range value with the same typed error, naming each edge's own field."""

from __future__ import annotations

import pytest
from scripted_backend import ScriptedBackend
from test_engine_seams import REF

from thinkling.mobile_bridge.bridge import LoadOptions
from thinkling.runtime import Engine, EngineConfig
from thinkling.runtime.api.limits import LOAD_LIMITS
from thinkling.runtime.errors import InvalidRequest
from thinkling.runtime.server.settings import ServerSettings

# (engine name, the server's and the bridge's name)
FIELDS = [("n_ctx", "n_ctx"), ("n_threads", "threads"), ("n_batch", "n_batch"), ("queue_size", "queue_size")]


def edges(engine_name: str, edge_name: str, value):
    """Feed ``value`` to each edge; yield (edge, the error it raised or None)."""
    def engine():
        Engine.from_backend(ScriptedBackend(), REF, EngineConfig(**{engine_name: value}), profile=None).close()

    for edge, call in (("engine", engine), ("server", lambda: ServerSettings(**{edge_name: value})),
                       ("bridge", lambda: LoadOptions.from_json({edge_name: value}))):
        try:
            call()
            yield edge, None
        except InvalidRequest as e:
            yield edge, e


@pytest.mark.parametrize("engine_name,edge_name", FIELDS)
@pytest.mark.parametrize("side", ["low", "high"])
def test_each_edge_refuses_the_same_value_with_the_same_error(engine_name, edge_name, side):
    limit = LOAD_LIMITS[engine_name]
    value = int(limit.low) - 1 if side == "low" else int(limit.high) + 1
    errors = dict(edges(engine_name, edge_name, value))
    assert all(e is not None for e in errors.values()), errors
    assert {e.param for e in errors.values()} <= {engine_name, edge_name}
    assert len({e.message.split(": ", 1)[1] for e in errors.values()}) == 1  # the same bound, in the same words


@pytest.mark.parametrize("engine_name,edge_name", FIELDS)
def test_each_edge_accepts_the_bounds_themselves(engine_name, edge_name):
    for value in (int(LOAD_LIMITS[engine_name].low), 64):
        assert all(e is None for _, e in edges(engine_name, edge_name, value))
