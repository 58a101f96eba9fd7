"""The ONE device-event builder (reference §2.1-2.2, §3.1-3.2, §17 row 14.10).

Every event written to ``events-<app>`` is a :class:`DeviceEvent` made here: telemetry by
:func:`build_device_event`, connection events by :func:`connection_event`, registry events by
:func:`registry_event`. Wire encodings live in :mod:`schemas.binding` (Kafka binary mode) and
:mod:`schemas.structured` (structured JSON). This module runs per message: plain slotted dataclasses, orjson.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import orjson

from schemas.keys import app_key, device_key, pct
from schemas.types import (
    CONNECTION_TYPE,
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_OCTET_STREAM,
    EVENT_TYPE,
    EXT_APPLICATION,
    EXT_APPLICATION_UID,
    EXT_CONNECTION_ID,
    EXT_DEVICE,
    EXT_DEVICE_UID,
    EXT_INSTANCE,
    EXT_PARTITION_KEY,
    EXT_SENDER,
    EXT_SENDER_UID,
    EXT_SEQUENCE,
    REGISTRY_TYPE,
    SOURCE_PREFIX,
    SPEC_VERSION,
    SUBJECT_APPLICATIONS,
    SUBJECT_CONNECTION,
    SUBJECT_DEVICES,
    is_json_content_type,
)

__all__ = [
    "DeviceEvent",
    "MalformedEvent",
    "PayloadRejected",
    "build_device_event",
    "connection_event",
    "device_source",
    "format_sequence",
    "format_time",
    "normalize_payload",
    "parse_time",
    "registry_event",
]

RegistryOperation = Literal["created", "updated", "deleted"]

#: Names an extension may never take: CloudEvents context attributes and the structured-mode data members.
RESERVED_NAMES: Final = frozenset(
    {"specversion", "id", "type", "source", "subject", "time", "datacontenttype", "dataschema", "data",
     "data_base64"}
)
_BUILDER_EXTENSIONS: Final = frozenset(
    {EXT_APPLICATION, EXT_APPLICATION_UID, EXT_DEVICE, EXT_DEVICE_UID, EXT_SENDER, EXT_SENDER_UID,
     EXT_PARTITION_KEY, EXT_INSTANCE}
)
_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]+")
_MAX_SEQUENCE: Final = 10**20


class PayloadRejected(ValueError):
    """The payload does not satisfy its declared content type (JSON declared, not JSON). HTTP 406 at the edge."""


class MalformedEvent(ValueError):
    """A record or document is not a valid Kedge CloudEvent (missing/invalid required attribute)."""


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A CloudEvents 1.0 event (``specversion`` is always ``1.0``).

    ``time`` is timezone-aware UTC. ``data`` is the raw body (compact JSON when ``datacontenttype`` is
    ``application/json``). ``extensions`` maps extension name to string value and must not be mutated
    (build a new event with :func:`dataclasses.replace`); its insertion order is the header order on the wire.
    """

    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    datacontenttype: str | None
    dataschema: str | None
    data: bytes
    extensions: dict[str, str]

    @property
    def specversion(self) -> str:
        return SPEC_VERSION

    @property
    def partitionkey(self) -> str | None:
        return self.extensions.get(EXT_PARTITION_KEY)

    @property
    def application(self) -> str | None:
        return self.extensions.get(EXT_APPLICATION)

    @property
    def device(self) -> str | None:
        return self.extensions.get(EXT_DEVICE)

    @property
    def sender(self) -> str | None:
        return self.extensions.get(EXT_SENDER)

    @property
    def key(self) -> bytes:
        """Kafka record key: the ``partitionkey`` extension, falling back to the event id (§1.2)."""
        return self.extensions.get(EXT_PARTITION_KEY, self.id).encode()


# ---------------------------------------------------------------------------------------------- time


def _utc(t: datetime) -> datetime:
    if t.tzinfo is UTC:
        return t
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}: event times must be timezone-aware")
    return t.astimezone(UTC)


def format_time(t: datetime, *, z: bool = False) -> str:
    """RFC 3339 like chrono ``to_rfc3339`` (``+00:00``) or, with ``z``, chrono serde (``Z``).

    Fraction digits as chrono ``SecondsFormat::AutoSi``: none, 3 or 6 (microsecond precision).
    """
    t = _utc(t)
    us = t.microsecond
    s = t.isoformat(timespec="seconds" if us == 0 else "milliseconds" if us % 1000 == 0 else "microseconds")
    return s[:-6] + "Z" if z else s


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or offset, any fraction length) to an aware UTC datetime."""
    try:
        t = datetime.fromisoformat(s)
    except ValueError:
        raise MalformedEvent(f"invalid time {s!r}") from None
    if t.tzinfo is None:
        raise MalformedEvent(f"time without offset {s!r}")
    return _utc(t)


# ---------------------------------------------------------------------------------------------- payload


def normalize_payload(payload: bytes, content_type: str | None) -> tuple[str, bytes]:
    """Apply the content-type rules of §2.2; return ``(datacontenttype, data)``.

    * JSON content type (see :func:`schemas.types.is_json_content_type`): must parse, else
      :class:`PayloadRejected`; data is re-serialised compactly (key order kept), type becomes ``application/json``.
    * other content type: passed through verbatim with the raw bytes.
    * none (or empty): JSON if it parses (``application/json``), else ``application/octet-stream``.
    """
    if content_type:
        if not is_json_content_type(content_type):
            return content_type, payload
        try:
            return CONTENT_TYPE_JSON, orjson.dumps(orjson.loads(payload))
        except orjson.JSONDecodeError as e:
            raise PayloadRejected(f"payload declared as {content_type!r} is not valid JSON: {e}") from None
    try:
        return CONTENT_TYPE_JSON, orjson.dumps(orjson.loads(payload))
    except orjson.JSONDecodeError:
        return CONTENT_TYPE_OCTET_STREAM, payload


# ---------------------------------------------------------------------------------------------- builders


def device_source(app: str, device: str | None = None) -> str:
    """``drogue://<app>/<pct(device)>`` — the app is NOT encoded (§17 row 14.3); app-level: ``drogue://<app>``."""
    if device is None:
        return SOURCE_PREFIX + app
    return f"{SOURCE_PREFIX}{app}/{pct(device)}"


def format_sequence(sequence: int) -> str:
    """The ``sequence`` extension: zero-padded to 20 digits so that string order is numeric order."""
    if not 0 <= sequence < _MAX_SEQUENCE:
        raise ValueError(f"sequence out of range: {sequence}")
    return f"{sequence:020d}"


def _device_extensions(
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    sender: str,
    sender_uid: str | None,
    instance: str,
) -> dict[str, str]:
    ext = {EXT_APPLICATION: app}
    if app_uid is not None:
        ext[EXT_APPLICATION_UID] = app_uid
    ext[EXT_DEVICE] = device
    if device_uid is not None:
        ext[EXT_DEVICE_UID] = device_uid
    ext[EXT_SENDER] = sender
    if sender_uid is not None:
        ext[EXT_SENDER_UID] = sender_uid
    ext[EXT_PARTITION_KEY] = device_key(app, sender)
    ext[EXT_INSTANCE] = instance
    return ext


def _add_extra(ext: dict[str, str], extra: Mapping[str, str]) -> None:
    for name, value in extra.items():
        if name in _BUILDER_EXTENSIONS or name in RESERVED_NAMES or not _EXTENSION_NAME.fullmatch(name):
            raise ValueError(f"invalid or reserved extension name {name!r}")
        ext[name] = value


def build_device_event(
    *,
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    sender: str,
    sender_uid: str | None,
    instance: str,
    channel: str,
    payload: bytes,
    content_type: str | None,
    data_schema: str | None = None,
    type_: str = EVENT_TYPE,
    id: str | None = None,
    time: datetime | None = None,
    extra_extensions: Mapping[str, str] | None = None,
) -> DeviceEvent:
    """Build a device-plane event (§2.1): ``device`` originated it, ``sender`` is the connected device/gateway.

    Raises :class:`PayloadRejected` when the payload contradicts a JSON content type, ``ValueError`` for a naive
    ``time`` or an invalid/reserved extra extension name. ``id`` defaults to a random UUIDv4, ``time`` to now.
    """
    datacontenttype, data = normalize_payload(payload, content_type)
    ext = _device_extensions(app, app_uid, device, device_uid, sender, sender_uid, instance)
    if extra_extensions:
        _add_extra(ext, extra_extensions)
    return DeviceEvent(
        id=str(uuid.uuid4()) if id is None else id,
        type=type_,
        source=device_source(app, device),
        subject=channel,
        time=datetime.now(UTC) if time is None else _utc(time),
        datacontenttype=datacontenttype,
        dataschema=data_schema,
        data=data,
        extensions=ext,
    )


def connection_event(
    *,
    app: str,
    app_uid: str | None,
    device: str,
    device_uid: str | None,
    instance: str,
    connected: bool,
    connection_id: str,
    sequence: int,
    id: str,
    reason: str | None = None,
    time: datetime | None = None,
) -> DeviceEvent:
    """An ``io.drogue.connection.v1`` event (§3.1): sender = device, data ``{"connected": b, "reason": r}``.

    ``id`` is deterministic (chosen by the caller) so consumers can drop replays; ``sequence`` is the per-device
    counter, rendered by :func:`format_sequence`.
    """
    body: dict[str, object] = {"connected": connected}
    if reason is not None:
        body["reason"] = reason
    ext = _device_extensions(app, app_uid, device, device_uid, device, device_uid, instance)
    ext[EXT_CONNECTION_ID] = connection_id
    ext[EXT_SEQUENCE] = format_sequence(sequence)
    return DeviceEvent(
        id=id,
        type=CONNECTION_TYPE,
        source=device_source(app, device),
        subject=SUBJECT_CONNECTION,
        time=datetime.now(UTC) if time is None else _utc(time),
        datacontenttype=CONTENT_TYPE_JSON,
        dataschema=None,
        data=orjson.dumps(body),
        extensions=ext,
    )


def registry_event(
    *,
    app: str,
    app_uid: str | None,
    instance: str,
    operation: RegistryOperation,
    paths: Sequence[str],
    generation: int,
    resource_version: str,
    uid: str,
    device: str | None = None,
    device_uid: str | None = None,
    id: str | None = None,
    time: datetime | None = None,
) -> DeviceEvent:
    """An ``io.drogue.registry.v1`` event (§3.2 extended by §17 row 14.10).

    With ``device``: subject ``devices``, device = sender = the changed device, keyed by its device key.
    Without: subject ``applications``, source ``drogue://<app>``, keyed by ``pct(app)``, no device extensions.
    Data: ``{"operation","paths","generation","resourceVersion","uid"}`` (``uid`` of the changed resource).
    """
    body = {
        "operation": operation,
        "paths": list(paths),
        "generation": generation,
        "resourceVersion": resource_version,
        "uid": uid,
    }
    if device is not None:
        subject = SUBJECT_DEVICES
        ext = _device_extensions(app, app_uid, device, device_uid, device, device_uid, instance)
    else:
        subject = SUBJECT_APPLICATIONS
        ext = {EXT_APPLICATION: app}
        if app_uid is not None:
            ext[EXT_APPLICATION_UID] = app_uid
        ext[EXT_PARTITION_KEY] = app_key(app)
        ext[EXT_INSTANCE] = instance
    return DeviceEvent(
        id=str(uuid.uuid4()) if id is None else id,
        type=REGISTRY_TYPE,
        source=device_source(app, device),
        subject=subject,
        time=datetime.now(UTC) if time is None else _utc(time),
        datacontenttype=CONTENT_TYPE_JSON,
        dataschema=None,
        data=orjson.dumps(body),
        extensions=ext,
    )
