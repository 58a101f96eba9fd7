"""CloudEvents structured JSON mode, as the MQTT and WebSocket integrations send it (reference §2.3).

One JSON object: ``specversion, id, type, source, subject, time`` (RFC 3339 with ``Z``), ``datacontenttype``,
``dataschema``, then every extension, then the data:

* JSON content type: ``data`` is the JSON value itself (embedded as is, never re-parsed: it is compact already);
* ``text/plain`` (Drogue's ``fixup_data_type``): ``data`` is the string, when the bytes are UTF-8;
* anything else: ``data_base64``. Empty data is left out.

The structured content type of an MQTT 5 PUBLISH carrying this is
``application/cloudevents+json; charset=utf-8``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

import orjson

from schemas.events import RESERVED_NAMES, DeviceEvent, MalformedEvent, format_time, parse_time
from schemas.types import CONTENT_TYPE_CLOUDEVENTS_JSON, CONTENT_TYPE_TEXT, SPEC_VERSION, is_json_content_type

__all__ = ["STRUCTURED_CONTENT_TYPE", "from_structured", "to_structured", "to_structured_dict"]

STRUCTURED_CONTENT_TYPE: Final = CONTENT_TYPE_CLOUDEVENTS_JSON + "; charset=utf-8"


def to_structured_dict(event: DeviceEvent) -> dict[str, Any]:
    """The structured-mode object (JSON data embedded as an :class:`orjson.Fragment`)."""
    out: dict[str, Any] = {
        "specversion": SPEC_VERSION,
        "id": event.id,
        "type": event.type,
        "source": event.source,
    }
    if event.subject is not None:
        out["subject"] = event.subject
    out["time"] = format_time(event.time, z=True)
    ct = event.datacontenttype
    if ct is not None:
        out["datacontenttype"] = ct
    if event.dataschema is not None:
        out["dataschema"] = event.dataschema
    out.update(event.extensions)
    if event.data:
        if ct is not None and is_json_content_type(ct):
            out["data"] = orjson.Fragment(event.data)
        elif ct is not None and ct.startswith(CONTENT_TYPE_TEXT) and _utf8(event.data):
            out["data"] = event.data.decode()
        else:
            out["data_base64"] = base64.b64encode(event.data).decode("ascii")
    return out


def to_structured(event: DeviceEvent) -> bytes:
    """``event`` as one structured-mode JSON document (UTF-8 bytes)."""
    return orjson.dumps(to_structured_dict(event))


def from_structured(raw: bytes | str) -> DeviceEvent:
    """Parse a structured-mode document; raises :class:`~schemas.events.MalformedEvent` when it is not one."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MalformedEvent(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise MalformedEvent("a structured CloudEvent is a JSON object")
    if doc.get("specversion") != SPEC_VERSION:
        raise MalformedEvent(f"unsupported specversion {doc.get('specversion')!r}")
    for name in ("id", "type", "source", "time"):
        if not isinstance(doc.get(name), str) or not doc[name]:
            raise MalformedEvent(f"missing required attribute {name!r}")
    ct = _optional_str(doc, "datacontenttype")
    data = b""
    if "data_base64" in doc:
        try:
            data = base64.b64decode(str(doc["data_base64"]), validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEvent("data_base64 is not base64") from None
    elif "data" in doc:
        value = doc["data"]
        is_text = isinstance(value, str) and ct is not None and not is_json_content_type(ct)
        data = value.encode() if is_text else orjson.dumps(value)
    extensions = {k: _ext_value(k, v) for k, v in doc.items() if k not in RESERVED_NAMES}
    return DeviceEvent(
        id=doc["id"],
        type=doc["type"],
        source=doc["source"],
        subject=_optional_str(doc, "subject"),
        time=parse_time(doc["time"]),
        datacontenttype=ct,
        dataschema=_optional_str(doc, "dataschema"),
        data=data,
        extensions=extensions,
    )


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _optional_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedEvent(f"attribute {name!r} must be a string")


def _ext_value(name: str, value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int):
        return str(value).lower() if isinstance(value, bool) else str(value)
    raise MalformedEvent(f"extension {name!r} must be a string, integer or boolean")
