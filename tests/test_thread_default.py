"""The thread policy's default is adaptive at every edge, read from one place
(``runtime.api.limits.DEFAULT_THREAD_POLICY``), and ``fixed`` stays selectable."""

from __future__ import annotations

import pytest

from thinkling.mobile_bridge.bridge import LoadOptions
from thinkling.mobile_bridge.jsonio import BridgeError
from thinkling.runtime import EngineConfig
from thinkling.runtime.api.limits import DEFAULT_THREAD_POLICY, THREAD_POLICIES
from thinkling.runtime.cli import build_parser
from thinkling.runtime.server.settings import ServerSettings


def test_the_one_default_is_adaptive():
    assert DEFAULT_THREAD_POLICY == "adaptive" and set(THREAD_POLICIES) == {"fixed", "adaptive"}


def test_engine_config():
    assert EngineConfig().thread_policy == "adaptive"
    assert EngineConfig(thread_policy="fixed").thread_policy == "fixed"


def test_serve_settings_and_flag(monkeypatch):
    monkeypatch.delenv("THINKLING_THREAD_POLICY", raising=False)
    assert ServerSettings().thread_policy == "adaptive"
    assert ServerSettings(thread_policy="fixed").thread_policy == "fixed"
    monkeypatch.setenv("THINKLING_THREAD_POLICY", "fixed")
    assert ServerSettings().thread_policy == "fixed"
    with pytest.raises(ValueError):
        ServerSettings(thread_policy="turbo")
    serve = build_parser().parse_args(["serve", "--thread-policy", "fixed"])
    assert serve.thread_policy == "fixed"


def test_ask_flag():
    parser = build_parser()
    assert parser.parse_args(["ask", "hi"]).thread_policy == "adaptive"
    assert parser.parse_args(["ask", "hi", "--thread-policy", "fixed"]).thread_policy == "fixed"
    with pytest.raises(SystemExit):
        parser.parse_args(["ask", "hi", "--thread-policy", "turbo"])


def test_bridge_load_options():
    assert LoadOptions.from_json({}).engine_config().thread_policy == "adaptive"
    assert LoadOptions.from_json({"thread_policy": "fixed"}).engine_config().thread_policy == "fixed"
    with pytest.raises(BridgeError):
        LoadOptions.from_json({"thread_policy": "turbo"})
