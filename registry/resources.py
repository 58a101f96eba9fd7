"""Pure rules of the registry resources (reference §8): names, spec validation, change paths, JSON rendering.

A stored resource is a plain ``dict`` row (the columns of ``registry.tables``); nothing here does I/O.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from registry.authn import certs
from registry.errors import BadRequest
from schemas.registry import (
    AliasSection,
    CertCredential,
    CoreSection,
    CredentialsSection,
    GatewaySelectorSection,
    MqttSection,
    PassCredential,
    UserCredential,
)

Row = Mapping[str, Any]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?")
#: the finalizer the registry puts on an application that is deleted while it still has devices
HAS_DEVICES = "has-devices"


def now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


# ------------------------------------------------------------------------------------------------- names


def validate_app_name(name: str) -> None:
    """Application names are hostnames (RFC 1123: dot-separated labels of 1..63 chars, <= 253 total)."""
    if not name or len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in name.split(".")):
        raise BadRequest(f"invalid application name {name!r}: must be a valid hostname")


def validate_device_name(name: str) -> None:
    """Device names are non-empty, at most 255 bytes (UTF-8), valid Unicode, without control characters.

    (NUL cannot be stored in PostgreSQL text nor carried in an MQTT string, a newline makes the device unreachable
    at ``/devices/{device:path}`` and forges log lines, a lone surrogate cannot be encoded.)"""
    if not name:
        raise BadRequest("invalid device name: must not be empty")
    if len(name.encode("utf-8", "surrogatepass")) > 255:
        raise BadRequest("invalid device name: longer than 255 bytes")
    if _CONTROL.search(name):
        raise BadRequest("invalid device name: must not contain control characters (NUL, newline, ...)")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest("invalid device name: not valid Unicode (lone surrogate)") from None


# ------------------------------------------------------------------------------------ validation messages


def describe(error: ValidationError, prefix: str = "") -> str:
    """A one-line message naming every offending field (``metadata.nmae: unknown field``)."""
    parts = []
    for e in error.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "json-or-python")))
        where = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "body")
        if e["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown field")
        elif e["type"] == "missing":
            parts.append(f"{where}: missing field")
        else:
            parts.append(f"{where}: {e['msg']}")
    return "; ".join(dict.fromkeys(parts))


_SECTIONS: dict[str, type[BaseModel]] = {
    "credentials": CredentialsSection,
    "gatewaySelector": GatewaySelectorSection,
    "alias": AliasSection,
    "core": CoreSection,
    "mqtt": MqttSection,
}
_APP_SECTIONS: dict[str, type[BaseModel]] = {"core": CoreSection, "mqtt": MqttSection}


def _validate_sections(spec: Mapping[str, Any], sections: Mapping[str, type[BaseModel]]) -> None:
    for key, model in sections.items():
        if key in spec:
            try:
                model.model_validate(spec[key])
            except ValidationError as exc:
                raise BadRequest(describe(exc, f"spec.{key}")) from None


_CREDENTIAL_KINDS: dict[str, type[BaseModel]] = {"pass": PassCredential, "user": UserCredential,
                                              "cert": CertCredential}


def _check_password(value: Any, where: str) -> None:
    """A password is a string or ``{"plain"|"bcrypt"|"sha512": "<string>"}``."""
    if isinstance(value, str):
        return
    if (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("plain", "bcrypt", "sha512")
            and isinstance(next(iter(value.values())), str)):
        return
    raise BadRequest(f'{where}: a password is a string or {{"plain"|"bcrypt"|"sha512": "<string>"}}')


def _validate_credential_entries(section: Any) -> None:
    """Each entry is ``{"pass": …}``, ``{"user": …}`` or ``{"cert": …}``: say which one is wrong, and how."""
    entries = section.get("credentials") if isinstance(section, dict) else None
    if not isinstance(entries, list):
        return  # the section model reports it
    for i, entry in enumerate(entries):
        where = f"spec.credentials.credentials[{i}]"
        kinds = [k for k in entry if k in _CREDENTIAL_KINDS] if isinstance(entry, dict) else []
        if not isinstance(entry, dict) or len(entry) != 1 or len(kinds) != 1:
            got = ", ".join(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            raise BadRequest(f"{where}: expected exactly one of pass, user, cert (got {got or 'nothing'})")
        kind = kinds[0]
        if kind == "pass":
            _check_password(entry["pass"], f"{where}.pass")
        elif kind == "user" and isinstance(entry["user"], dict) and "password" in entry["user"]:
            _check_password(entry["user"]["password"], f"{where}.user.password")
        try:
            _CREDENTIAL_KINDS[kind].model_validate(entry)
        except ValidationError as exc:
            raise BadRequest(describe(exc, where)) from None


def validate_device_spec(spec: Mapping[str, Any]) -> None:
    """Known device sections must have their documented shape; other sections are free-form."""
    if "credentials" in spec:
        _validate_credential_entries(spec["credentials"])
    _validate_sections(spec, _SECTIONS)


def validate_app_spec(spec: Mapping[str, Any]) -> None:
    _validate_sections(spec, _APP_SECTIONS)


# ---------------------------------------------------------------------------------------------- derived


def app_status(spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    """The stored status of an application: as written, with the server-owned ``trustAnchors`` section
    derived from ``spec.trustAnchors`` (§8.2)."""
    out = {k: v for k, v in status.items() if k != "trustAnchors"}
    anchors = certs.trust_anchor_status(spec)
    if anchors is not None:
        out["trustAnchors"] = anchors
    return out


def disabled(spec: Mapping[str, Any]) -> bool:
    core = spec.get("core")
    return isinstance(core, dict) and core.get("disabled") is True


def aliases(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """``(kind, alias)`` lookup names of a device: ``spec.alias[]`` and the usernames of unique ``user``
    credentials."""
    found: set[tuple[str, str]] = set()
    alias = spec.get("alias")
    if isinstance(alias, list):
        found.update(("alias", a) for a in alias if isinstance(a, str) and a)
    creds = spec.get("credentials")
    if isinstance(creds, dict):
        section = CredentialsSection.model_validate(creds)
        for c in section.credentials:
            if isinstance(c, UserCredential) and c.user.unique:
                found.add(("username", c.user.username))
    return found


def _changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def diff_paths(old: Row, new: Row) -> list[str]:
    """Changed paths (reference §3.3): ``.metadata`` for labels/annotations/finalizers, ``.spec.<key>`` and
    ``.status.<key>`` per changed top-level key. Empty when nothing changed."""
    paths = []
    if any(old[f] != new[f] for f in ("labels", "annotations", "finalizers", "deletion_timestamp")):
        paths.append(".metadata")
    paths.extend(f".spec.{k}" for k in _changed_keys(old["spec"], new["spec"]))
    paths.extend(f".status.{k}" for k in _changed_keys(old["status"], new["status"]))
    return paths


def spec_changed(paths: Iterable[str]) -> bool:
    return any(p.startswith(".spec") for p in paths)


# ---------------------------------------------------------------------------------------------- JSON out


def timestamp(value: datetime | None) -> str | None:
    """RFC 3339 with ``Z`` like chrono's serde (``2022-07-07T13:47:39.123456Z``)."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render(row: Row, *, app: str | None = None) -> dict[str, Any]:
    """The Drogue JSON of a stored application (``app`` None) or device (``app`` = its application)."""
    meta: dict[str, Any] = {"name": row["name"]}
    if app is not None:
        meta["application"] = app
    meta["uid"] = row["uid"]
    meta["creationTimestamp"] = timestamp(row["creation_timestamp"])
    meta["generation"] = row["generation"]
    meta["resourceVersion"] = row["resource_version"]
    if row["deletion_timestamp"] is not None:
        meta["deletionTimestamp"] = timestamp(row["deletion_timestamp"])
    for field in ("finalizers", "labels", "annotations"):
        if row[field]:
            meta[field] = row[field]
    out: dict[str, Any] = {"metadata": meta}
    if row["spec"]:
        out["spec"] = row["spec"]
    if row["status"]:
        out["status"] = row["status"]
    return out
