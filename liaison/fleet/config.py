"""The fleet's config file: where the fleet service listens and which booths it follows.

A TOML file (JSON also works, same structure)::

    [fleet]
    port = 8800                       # the fleet dashboard and its WebSocket
    token = "a-long-random-secret"     # or token_env = "LIAISON_FLEET_TOKEN"
    observer_token = "another-secret"  # optional: view only (or observer_token_env)
    store = "postgresql://liaison@db.lab.example/liaison"   # default: fleet.sqlite beside this file

    [[booth]]
    name = "booth-1"
    url = "ws://10.0.0.11:8765/"
    token = "booth-1-token"            # or token_env = "BOOTH1_TOKEN"
    role = "controller"                # "observer": the fleet only watches this booth

Every mistake is reported with the field it is in (``booth[2].url: ...``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Literal, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ConfigError(ValueError):
    """The config file is missing, unreadable or wrong; the message names the field."""


class BoothConfig(BaseModel):
    """One booth: an ordinary ``liaison serve`` the fleet connects to as a client."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Short unique name shown on the tile and used as the store's booth key.")
    url: str = Field(description="The booth's WebSocket URL, e.g. ws://10.0.0.11:8765/.")
    token: Optional[str] = Field(None, description="The booth's token.")
    token_env: Optional[str] = Field(None, description="Read the booth's token from this environment variable.")
    role: Literal["controller", "observer"] = "controller"
    dashboard: Optional[str] = Field(None, description="The booth's own dashboard [default: from url].")
    fingerprint: Optional[str] = Field(None, description=(
        "For a wss:// booth: the SHA-256 fingerprint `liaison serve` printed for its certificate (pinned)."))
    ca_file: Optional[str] = Field(None, description="For a wss:// booth: a CA file (or the booth's certificate).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("a booth name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{value!r} is not a ws:// or wss:// URL")
        return value

    @field_validator("fingerprint")
    @classmethod
    def _fingerprint(cls, value: Optional[str]) -> Optional[str]:
        from ..client.tls import normalise_fingerprint

        return None if value is None else normalise_fingerprint(value)

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no CA file at {value}")
        return value

    @model_validator(mode="after")
    def _token(self) -> "BoothConfig":
        if (self.fingerprint or self.ca_file) and urlsplit(self.url).scheme != "wss":
            raise ValueError("fingerprint and ca_file are for wss:// booths (this one is ws://)")
        if self.token is None and self.token_env:
            self.token = os.environ.get(self.token_env)
            if self.token is None:
                raise ValueError(f"token_env {self.token_env!r} is not set in the environment")
        if self.dashboard is None:
            parts = urlsplit(self.url)
            self.dashboard = f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}/"
        return self


class FleetSettings(BaseModel):
    """The fleet service itself."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8800, ge=0, le=65535)
    token: Optional[str] = Field(None, description="The controller token: see everything, start/pause/stop.")
    token_env: Optional[str] = None
    observer_token: Optional[str] = Field(None, description=(
        "A second token that only watches: tiles, alerts and /api/stats; actions are refused (forbidden)."))
    observer_token_env: Optional[str] = None
    no_auth: bool = False
    allowed_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list, description=(
        "Host headers accepted besides the bound address (e.g. the name people type); "
        "on loopback only loopback names are accepted otherwise."))
    store: Optional[str] = None
    silent_after: float = Field(30.0, gt=0, description="Seconds without contact before a booth counts as silent.")
    stall_after: float = Field(60.0, gt=0, description="Seconds a running booth may go without a new row.")

    @model_validator(mode="after")
    def _checks(self) -> "FleetSettings":
        if self.token is None and self.token_env:
            self.token = os.environ.get(self.token_env)
            if self.token is None:
                raise ValueError(f"token_env {self.token_env!r} is not set in the environment")
        if self.observer_token is None and self.observer_token_env:
            self.observer_token = os.environ.get(self.observer_token_env)
            if self.observer_token is None:
                raise ValueError(f"observer_token_env {self.observer_token_env!r} is not set in the environment")
        if self.no_auth and self.host not in LOOPBACK:
            raise ValueError("no_auth is only allowed when the fleet listens on loopback")
        if self.token is not None and len(self.token) < 12:
            raise ValueError("the fleet token must be at least 12 characters")
        if self.observer_token is not None:
            if len(self.observer_token) < 12:
                raise ValueError("the fleet's observer_token must be at least 12 characters")
            if self.observer_token == self.token:
                raise ValueError("observer_token must differ from token (it would grant control)")
            if self.no_auth:
                raise ValueError("observer_token means nothing with no_auth (everyone may control)")
        if self.token is None and not self.no_auth:
            self.token = secrets.token_urlsafe(18)
            self.generated_token = True
        return self

    generated_token: bool = False

    def credentials(self):
        """The tokens as a booth server checks them (:class:`liaison.server.auth.Credentials`)."""
        from ..server.auth import Credentials

        return Credentials(self.token, self.observer_token, self.no_auth)


class FleetConfig(BaseModel):
    """The whole file: ``[fleet]`` and one ``[[booth]]`` table per booth."""

    model_config = ConfigDict(extra="forbid")

    fleet: FleetSettings = Field(default_factory=FleetSettings)
    booth: list[BoothConfig] = Field(min_length=1, description="The booths (at least one).")
    source: Optional[Path] = None

    @model_validator(mode="after")
    def _unique(self) -> "FleetConfig":
        names = [b.name for b in self.booth]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"booth names must be unique; repeated: {', '.join(duplicates)}")
        return self

    def store_url(self) -> str:
        """The store to use: the configured URL, else ``fleet.sqlite`` beside the config file."""
        if self.fleet.store:
            return self.fleet.store
        base = self.source.parent if self.source else Path.cwd()
        return str(base / "fleet.sqlite")

    def booth_named(self, name: str) -> BoothConfig | None:
        """The booth called ``name``, or None."""
        return next((b for b in self.booth if b.name == name), None)


def load_config(path: str | Path) -> FleetConfig:
    """Read and check a config file (TOML, or JSON when it ends in .json)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the fleet config {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            raw = tomllib.loads(text)
    except (ValueError, ImportError) as exc:
        raise ConfigError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}") from exc
    return parse_config(raw, source=path)


def parse_config(raw: object, source: Path | None = None) -> FleetConfig:
    """Check a config already parsed into dicts; errors name the field (``booth[1].url``)."""
    if not isinstance(raw, dict):
        raise ConfigError("the fleet config must be a table with [fleet] and [[booth]] entries")
    try:
        config = FleetConfig.model_validate({**raw, "source": source})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                            for i, p in enumerate(error["loc"]))
            problems.append(f"{where or 'config'}: {error['msg'].removeprefix('Value error, ')}")
        raise ConfigError(f"{source or 'fleet config'}: " + "; ".join(problems)) from None
    return config
