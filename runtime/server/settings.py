"""Server settings: one pydantic-settings class fed by flags, ``THINKLING_*``
environment variables and an optional TOML/JSON config file.

Precedence: command-line flags > environment > config file > defaults.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (BaseSettings, JsonConfigSettingsSource, NoDecode, SettingsConfigDict,
                               TomlConfigSettingsSource)

from ..api.limits import DEFAULT_MAX_TOKENS, DEFAULT_THREAD_POLICY, MAX_TOKENS_CAP, THREAD_POLICIES, check_load
from ..api.requests import RequestDefaults
from ..types import THINK_MODES

LOOPBACK_NAMES = ("localhost", "localhost.")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name counts as exposed."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split_list(value):
    """``THINKLING_CORS_ORIGINS=a,b`` as well as a JSON list or a real list."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            import json

            return json.loads(value)
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class ServerSettings(BaseSettings):
    """Everything ``thinkling serve`` can be told. Field names are the config-file
    keys; the environment variable is ``THINKLING_`` + the upper-cased name."""

    model_config = SettingsConfigDict(env_prefix="THINKLING_", extra="forbid", validate_default=True)

    model: str | None = Field(None, description="registered model name or path (default: gemma-3-270m)")
    host: str = Field("127.0.0.1", description="address to bind; non-loopback needs api_key or insecure")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0: pick a free one)")
    api_key: SecretStr | None = Field(None, description="require 'Authorization: Bearer <key>'")
    insecure: bool = Field(False, description="allow a non-loopback bind without an API key")
    queue_size: int = Field(8, description="requests waiting beyond the running one; past it: 429")
    max_tokens_cap: int = Field(MAX_TOKENS_CAP, ge=1,
                                description="upper bound on a request's max_tokens (larger is clamped)")
    default_max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1,
                                    description="max_tokens when the request gives none (clamped to the cap)")
    default_think: str = Field("auto", description=f"think mode when a request gives none: {THINK_MODES}")
    speculative: Literal["off", "ngram"] = Field(
        "off", description="speculative decoding for requests that do not say: ngram (prompt lookup, greedy "
                           "requests only) or off")
    request_timeout_s: float | None = Field(
        300.0, gt=0, description="wall-clock budget per request from arrival (queue included); None: unlimited")
    n_ctx: int = Field(4096, description="context window in tokens")
    threads: int | None = Field(None, description="CPU threads for llama.cpp (default: physical cores)")
    thread_policy: Literal[THREAD_POLICIES] = Field(
        DEFAULT_THREAD_POLICY, description="adaptive: decode and prefill on 1..threads by measured speed, stepping "
                                           "down when another process takes a core (runtime/threads.py); "
                                           "fixed: always threads")
    n_batch: int = Field(512, description="prompt evaluation batch size")
    mmap: bool = Field(False, description="map the model file instead of reading it (shares pages, loads faster); "
                                          "rewriting a mapped file in place crashes the server (SIGBUS)")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest accepted request body; past it: 413")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="origins allowed by CORS (empty: CORS off)")
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None, description="accepted Host headers; default: loopback names when bound to loopback, else any")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="uvicorn log level")
    graceful_shutdown_s: float = Field(10.0, ge=0, description="how long shutdown waits for open requests")
    # Slow or idle clients must not hold the server: each connection is bounded in time at every stage.
    header_timeout_s: float = Field(
        10.0, gt=0, description="a new connection that has not sent its request line and headers by then is closed")
    body_timeout_s: float = Field(
        30.0, gt=0, description="a request body still incomplete after this many seconds is refused with 408")
    keep_alive_s: float = Field(5.0, gt=0, description="an idle keep-alive connection is closed after this (uvicorn)")

    _split = field_validator("cors_origins", "allowed_hosts", mode="before")(_split_list)

    @field_validator("n_ctx", "threads", "n_batch", "queue_size")
    @classmethod
    def _load_bounds(cls, v, info):
        # the engine-load table (runtime.api.limits.LOAD_LIMITS): InvalidRequest, as at every edge
        if v is None:
            return v
        return check_load("n_threads" if info.field_name == "threads" else info.field_name, v, info.field_name)

    @field_validator("default_think")
    @classmethod
    def _think_mode(cls, v: str) -> str:
        if v not in THINK_MODES:
            raise ValueError(f"must be one of {THINK_MODES}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ServerSettings":
        # the cap wins over the default (setting only a small cap must just work)
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens_cap)
        if self.api_key is not None and not self.api_key.get_secret_value():
            raise ValueError("api_key must not be empty")
        if "*" in self.cors_origins and self.api_key is None and not is_loopback(self.host):
            raise ValueError("cors_origins '*' on an exposed address needs an api_key")
        return self

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Earlier sources win: flags (init kwargs) > env > config file.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls),
                JsonConfigSettingsSource(settings_cls))

    def request_defaults(self) -> RequestDefaults:
        """What a request that does not say gets (``runtime.api.chat_request``'s defaults)."""
        return RequestDefaults(max_tokens=self.default_max_tokens, max_tokens_cap=self.max_tokens_cap,
                               think=self.default_think, timeout_s=self.request_timeout_s)

    def bind_problem(self) -> str | None:
        """Why this bind is refused, or None. An exposed address needs a key or --insecure."""
        if is_loopback(self.host) or self.api_key is not None or self.insecure:
            return None
        return (f"refusing to listen on {self.host}, a non-loopback address, without an API key: "
                "anyone on the network could use the model. Set --api-key (or THINKLING_API_KEY), "
                "or pass --insecure to accept that.")

    def host_allowlist(self) -> list[str] | None:
        """Host header names to accept (None: any). Loopback binds default to loopback
        names, which stops DNS-rebinding pages from reaching the local server."""
        if self.allowed_hosts is not None:
            return [h.lower() for h in self.allowed_hosts] or None
        if is_loopback(self.host):
            return ["localhost", "127.0.0.1", "[::1]", "::1", self.host.lower()]
        return None


def load_settings(config_file: str | Path | None = None, **flags) -> ServerSettings:
    """Build settings from ``flags`` (None values are ignored), the environment and
    ``config_file`` (``.toml`` or ``.json``). Raises ``ValueError`` on a bad file
    name and ``pydantic.ValidationError`` on bad values."""
    flags = {k: v for k, v in flags.items() if v is not None}
    if config_file is None:
        return ServerSettings(**flags)
    path = Path(config_file)
    key = {".toml": "toml_file", ".json": "json_file"}.get(path.suffix.lower())
    if key is None:
        raise ValueError(f"config file must end in .toml or .json: {path}")
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    # The file sources read their path from model_config; a subclass carries it
    # for this one load without touching the shared class.
    cls = type("ServerSettings", (ServerSettings,),
               {"model_config": {**ServerSettings.model_config, key: path}})
    return cls(**flags)

