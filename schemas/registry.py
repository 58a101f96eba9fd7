"""Registry resource models (Drogue Cloud 0.10 JSON, reference §8.2) and the internal change record (§3.3).

Input models accept Drogue's JSON as-is: camelCase metadata with unknown fields refused, free-form
``spec``/``status`` sections. Known device spec sections (credentials, alias, gatewaySelector, core) have
models of their own so the registry can validate them on write and the authenticator can read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

JsonObject = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# ---------------------------------------------------------------------------------------------- metadata


class _MetadataIn(_Strict):
    """Metadata as written by a client. Server-managed fields are accepted and ignored (except as preconditions)."""

    name: str
    uid: str = ""
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    generation: int = 0
    resource_version: str = Field(default="", alias="resourceVersion")
    deletion_timestamp: datetime | None = Field(default=None, alias="deletionTimestamp")
    finalizers: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class NonScopedMetadataIn(_MetadataIn):
    """Application metadata (``NonScopedMetadata``)."""


class ScopedMetadataIn(_MetadataIn):
    """Device metadata (``ScopedMetadata``); ``application`` defaults to the application in the path."""

    application: str | None = None


class ApplicationIn(_Strict):
    """An application as sent by a client. Unknown top-level fields are refused (a typo like ``sepc`` would
    otherwise silently drop the spec)."""

    metadata: NonScopedMetadataIn
    spec: JsonObject = Field(default_factory=dict)
    status: JsonObject = Field(default_factory=dict)


class DeviceIn(_Strict):
    """A device as sent by a client (unknown top-level fields refused)."""

    metadata: ScopedMetadataIn
    spec: JsonObject = Field(default_factory=dict)
    status: JsonObject = Field(default_factory=dict)


# ------------------------------------------------------------------------------------- device spec sections


class PlainPassword(_Strict):
    plain: str


class BcryptPassword(_Strict):
    bcrypt: str


class Sha512Password(_Strict):
    sha512: str


Password = str | PlainPassword | BcryptPassword | Sha512Password


class UserCredentialSpec(_Strict):
    username: str
    password: Password
    unique: bool = False


class PassCredential(_Strict):
    pass_: Password = Field(alias="pass")


class UserCredential(_Strict):
    user: UserCredentialSpec


class CertCredential(_Strict):
    cert: str


Credential = PassCredential | UserCredential | CertCredential


class CredentialsSection(_Strict):
    """``spec.credentials``."""

    credentials: list[Credential] = Field(default_factory=list)


class GatewaySelectorSection(_Strict):
    """``spec.gatewaySelector``."""

    match_names: list[str] = Field(default_factory=list, alias="matchNames")


class CoreSection(BaseModel):
    """``spec.core`` (other keys tolerated)."""

    disabled: bool = False


class AliasSection(RootModel[list[str]]):
    """``spec.alias``: a list of alternative names of the device."""


class MqttDialect(BaseModel):
    """``spec.mqtt.dialect``: ``{"type": "drogue/v1"}`` or ``{"type": "plainTopic", "devicePrefix": bool}``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["drogue/v1", "plainTopic"]
    device_prefix: bool = Field(default=False, alias="devicePrefix")


class MqttSection(BaseModel):
    """``spec.mqtt`` of a device or application (other keys tolerated)."""

    dialect: MqttDialect | None = None


# ------------------------------------------------------------------------------------ internal change record


Operation = Literal["created", "updated", "deleted"]


class RegistryChange(BaseModel):
    """One committed registry change, published to the internal ``registry`` topic by the outbox relay.

    ``device`` is None for application-level changes. ``paths`` follow reference §3.3 (``.``, ``.metadata``,
    ``.spec.<key>``, ``.status.<key>``). ``disabled`` is the resource's ``spec.core.disabled`` after the change
    (True for deletions is NOT implied: consumers check ``operation``). ``cascade`` marks device deletions
    caused by deleting their application (Drogue sends no application-visible event for those).

    ``operation`` is ``deleted`` for every change that leaves the resource deleting or gone: the hard delete
    (paths ``["."]``), the soft delete that sets ``deletionTimestamp`` while finalizers are pending (paths
    ``[".metadata"]``, ``deleting`` True) and any later update of the deleting resource. So a consumer never
    sees ``updated`` for a resource that can no longer be used.
    """

    model_config = ConfigDict(populate_by_name=True)

    operation: Operation
    app: str
    #: the application's uid (for device changes: of the app the device belongs to)
    app_uid: str = Field(alias="appUid")
    device: str | None = None
    paths: list[str]
    generation: int
    resource_version: str = Field(alias="resourceVersion")
    uid: str
    revision: int
    disabled: bool = False
    cascade: bool = False
    #: the resource still exists but has a ``deletionTimestamp`` (finalizers pending)
    deleting: bool = False


# -------------------------------------------------------------------------------- device authentication (§9)


class PassAuthCredential(_Strict):
    pass_: str = Field(alias="pass")


class UserAuthCredentialSpec(_Strict):
    username: str
    password: str


class UserAuthCredential(_Strict):
    user: UserAuthCredentialSpec


class CertAuthCredential(_Strict):
    """A client certificate chain, leaf first, each certificate as DER bytes (JSON array of numbers)."""

    cert: list[list[int]]

    @model_validator(mode="after")
    def _bytes(self) -> CertAuthCredential:
        for der in self.cert:
            if any(b < 0 or b > 255 for b in der):
                raise ValueError("certificate bytes must be 0..255")
        return self


AuthCredential = PassAuthCredential | UserAuthCredential | CertAuthCredential


class AuthenticationRequest(BaseModel):
    """``POST /api/v1/auth`` body."""

    model_config = ConfigDict(populate_by_name=True)

    application: str
    device: str
    credential: AuthCredential
    as_: str | None = Field(default=None, alias="as")


class AuthorizeAsRequest(BaseModel):
    """``POST /api/v1/authorize_as`` body."""

    model_config = ConfigDict(populate_by_name=True)

    application: str
    device: str
    as_: str = Field(alias="as")
