"""Pure helpers of the management commands: parsing inputs and changing resource JSON. No I/O."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from kedge.errors import KedgeError

__all__ = [
    "LabelChange",
    "add_alias",
    "add_gateway",
    "age",
    "apply_labels",
    "parse_json_object",
    "parse_label_args",
    "parse_resource_text",
    "set_password",
]

#: ``(key, value)``; value None removes the label
LabelChange = tuple[str, str | None]


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object from ``text``, or a one-line :class:`KedgeError` naming ``what`` (e.g. ``--spec``)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise KedgeError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise KedgeError(f"{what} must be a JSON object, not {type(value).__name__}")
    return value


def parse_resource_text(text: str, what: str) -> dict[str, Any]:
    """A resource from JSON or YAML text (JSON is YAML, so both work)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).replace("\n", " ")
        raise KedgeError(f"{what} is neither valid JSON nor YAML: {first}") from None
    if not isinstance(value, dict):
        raise KedgeError(f"{what} must hold one object (a resource with metadata and spec)")
    return value


def parse_label_args(args: list[str]) -> list[LabelChange]:
    """``k=v`` sets, ``k-`` removes (kubectl style)."""
    changes: list[LabelChange] = []
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            if not key:
                raise KedgeError(f"invalid label {arg!r}: empty key (use k=v or k-)")
            changes.append((key, value))
        elif arg.endswith("-") and len(arg) > 1:
            changes.append((arg[:-1], None))
        else:
            raise KedgeError(f"invalid label {arg!r}: use k=v to set or k- to remove")
    return changes


def apply_labels(resource: dict[str, Any], changes: list[LabelChange]) -> dict[str, Any]:
    out = copy.deepcopy(resource)
    labels = dict(out.setdefault("metadata", {}).get("labels") or {})
    for key, value in changes:
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    out["metadata"]["labels"] = labels
    return out


def _spec(resource: dict[str, Any]) -> dict[str, Any]:
    spec = resource.get("spec")
    if not isinstance(spec, dict):
        spec = resource["spec"] = {}
    return spec


def set_password(device: dict[str, Any], password: str, username: str | None) -> dict[str, Any]:
    """Replace the device's ``pass`` credential (or its ``user`` credential of that username)."""
    out = copy.deepcopy(device)
    section = _spec(out).setdefault("credentials", {})
    creds = [c for c in section.get("credentials") or [] if isinstance(c, dict)]
    if username is None:
        creds = [c for c in creds if "pass" not in c] + [{"pass": password}]
    else:
        creds = [c for c in creds if (c.get("user") or {}).get("username") != username]
        creds.append({"user": {"username": username, "password": password}})
    section["credentials"] = creds
    return out


def add_gateway(device: dict[str, Any], gateway: str) -> dict[str, Any]:
    out = copy.deepcopy(device)
    selector = _spec(out).setdefault("gatewaySelector", {})
    names = list(selector.get("matchNames") or [])
    if gateway not in names:
        names.append(gateway)
    selector["matchNames"] = names
    return out


def add_alias(device: dict[str, Any], alias: str) -> dict[str, Any]:
    out = copy.deepcopy(device)
    spec = _spec(out)
    aliases = list(spec.get("alias") or [])
    if alias not in aliases:
        aliases.append(alias)
    spec["alias"] = aliases
    return out


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl-style age of an RFC 3339 timestamp: ``42s``, ``5m``, ``3h``, ``12d``."""
    if not timestamp:
        return ""
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return ""
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
