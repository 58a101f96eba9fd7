"""Contexts: where the management CLI talks to and as whom, kept in ``$XDG_CONFIG_HOME/kedge/config.yaml``.

The file holds secrets (JWTs, the password used to refresh them, access tokens), so it is written mode 0600
(directory 0700) and replaced atomically. Shape::

    active: local
    contexts:
      - name: local
        api_url: http://127.0.0.1:8011
        ws_url: ws://127.0.0.1:8082
        default_app: my-app
        ca_file: /home/me/ca.pem   # optional: a private CA trusted besides the default store (`--ca-file`)
        auth: {kind: password, username: admin, password: ..., token: <jwt>, exp: 1700000000}
        # or   {kind: api_key, username: admin, token: drg_...}
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kedge.errors import KedgeError

__all__ = [
    "Auth",
    "Config",
    "ConfigStore",
    "Context",
    "NoContext",
    "config_path",
    "derive_ws_url",
]

#: the default port of the WebSocket integration (``IntegrationSettings.ws_port``)
DEFAULT_WS_PORT = 8082


class NoContext(KedgeError):
    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "no context: run `kedge login <url>` first")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Auth(_Model):
    """``password``: a JWT from ``POST /api/token`` plus the password to get the next one (no refresh
    tokens in the local issuer); ``api_key``: ``username`` + an access token (never expires)."""

    kind: Literal["password", "api_key"]
    username: str
    password: str | None = None
    token: str | None = None
    #: JWT expiry, seconds since the epoch (kind ``password``)
    exp: int | None = None
    #: the JWT's lifetime in seconds when it was issued (decides how early to refresh)
    ttl: int | None = None
    #: the lifetime asked for at login (`kedge login --jwt-ttl`), asked again on every renewal
    requested_ttl: int | None = None

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(exclude_none=True)
        for secret in ("password", "token"):
            if secret in data:
                data[secret] = "***"
        return data


class Context(_Model):
    name: str
    api_url: str
    ws_url: str
    default_app: str | None = None
    #: absolute path of a PEM CA bundle trusted (besides the default store) by every request of this context
    ca_file: str | None = None
    auth: Auth

    def redacted(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"auth"})
        data["auth"] = self.auth.redacted()
        return data


class Config(_Model):
    active: str | None = None
    contexts: list[Context] = Field(default_factory=list)

    def find(self, name: str) -> Context | None:
        return next((c for c in self.contexts if c.name == name), None)

    def get(self, name: str | None = None) -> Context:
        """The named context, else the active one; :class:`NoContext` if there is none."""
        if name is not None:
            found = self.find(name)
            if found is None:
                raise NoContext(f"no context named {name!r} (see `kedge context list`)")
            return found
        if not self.contexts:
            raise NoContext()
        if self.active is None or self.find(self.active) is None:
            raise NoContext("no active context: pick one with `kedge context use <name>`")
        found = self.find(self.active)
        assert found is not None
        return found

    def put(self, context: Context) -> None:
        """Add or replace the context of that name."""
        self.contexts = [c for c in self.contexts if c.name != context.name] + [context]

    def remove(self, name: str) -> None:
        if self.find(name) is None:
            raise NoContext(f"no context named {name!r} (see `kedge context list`)")
        self.contexts = [c for c in self.contexts if c.name != name]
        if self.active == name:
            self.active = self.contexts[0].name if self.contexts else None


def config_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/kedge/config.yaml`` (default ``~/.config``); ``environ`` is passed in by the CLI."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "kedge" / "config.yaml"


def derive_ws_url(api_url: str) -> str:
    """The WebSocket integration's default URL for an API URL: same host, ws(s), port 8082."""
    parts = urlsplit(api_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((scheme, f"{host}:{DEFAULT_WS_PORT}", "", "", ""))


class ConfigStore:
    """Reads and writes the config file (0600, atomic replace)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Config:
        import yaml

        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return Config()
        except OSError as exc:
            raise KedgeError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text) or {}
            return Config.model_validate(data)
        except (yaml.YAMLError, ValidationError) as exc:
            first = str(exc).splitlines()[0]
            raise KedgeError(f"{self.path} is not a valid kedge config ({first}); fix or remove it") from None

    def save(self, config: Config) -> None:
        import yaml

        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = yaml.safe_dump(config.model_dump(exclude_none=True), sort_keys=False)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config.", suffix=".yaml")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
