"""The per-message attribute values of device events (reference §2.1-2.2), for :mod:`schemas.events`.

Event ids (random UUIDv4), RFC 3339 times, the content-type rules of the payload, and :class:`Extensions`, the
extension map that one connection's events share. Everything here runs once per message: cheap on purpose.
:mod:`schemas.events` re-exports the public names.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

import orjson

from schemas.types import CONTENT_TYPE_JSON, CONTENT_TYPE_OCTET_STREAM, is_json_content_type

__all__ = ["Extensions", "PayloadRejected", "format_time", "new_event_id", "normalize_payload"]


class PayloadRejected(ValueError):
    """The payload does not satisfy its declared content type (JSON declared, not JSON). HTTP 406 at the edge."""


class Extensions(dict[str, str]):
    """The extensions of an event built here: a ``dict`` that refuses to be changed after it is built.

    The builders share one instance between all events of the same device and connection (see
    :class:`DeviceEventTemplate`), and :mod:`schemas.binding` keeps the extensions' encoded Kafka headers on it
    (``kafka_headers``), so they are encoded once per connection, not once per message. Build a new one (or a
    plain ``dict``) to change an event's extensions.
    """

    __slots__ = ("kafka_headers",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(items)
        #: a cache of :mod:`schemas.binding`: the ``ce_<name>`` headers of these extensions, in order
        self.kafka_headers: list[tuple[str, bytes]] | None = None

    def __reduce__(self) -> tuple[type[Extensions], tuple[dict[str, str]]]:  # copy, deepcopy, pickle
        return Extensions, (dict(self),)

    def _immutable(self, *args: object, **kwargs: object) -> None:
        raise TypeError("event extensions are immutable: build a new dict")

    __setitem__ = __delitem__ = update = setdefault = clear = _immutable  # type: ignore[assignment]
    pop = popitem = __ior__ = _immutable  # type: ignore[assignment]


#: random bytes for event ids, taken 16 at a time (refilled per 256 ids; cleared in a forked child)
_id_pool: list[str] = []
_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _refill_ids() -> None:
    """256 random UUIDv4 strings (RFC 9562 version 4, variant 10) from one ``os.urandom`` call."""
    h = os.urandom(16 * 256).hex()
    v = _VARIANT
    _id_pool.extend(
        f"{h[i:i + 8]}-{h[i + 8:i + 12]}-4{h[i + 13:i + 16]}-{v[h[i + 16]]}{h[i + 17:i + 20]}-{h[i + 20:i + 32]}"
        for i in range(0, 32 * 256, 32)
    )


os.register_at_fork(after_in_child=_id_pool.clear)  # a child must never hand out its parent's ids


def new_event_id() -> str:
    """A random UUIDv4 string (reference §2.1: event ids are random UUIDv4), cheaper than ``str(uuid4())``."""
    if not _id_pool:
        _refill_ids()
    return _id_pool.pop()


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
    if t.tzinfo is not UTC:
        t = _utc(t)
    us = t.microsecond
    if us % 1000 and not z:  # the common case: microseconds, "+00:00"
        return t.isoformat()
    s = t.isoformat(timespec="seconds" if us == 0 else "milliseconds" if us % 1000 == 0 else "microseconds")
    return s[:-6] + "Z" if z else s


# ---------------------------------------------------------------------------------------------- payload


def normalize_payload(payload: bytes, content_type: str | None) -> tuple[str, bytes]:
    """Apply the content-type rules of §2.2; return ``(datacontenttype, data)``.

    * JSON content type (see :func:`schemas.types.is_json_content_type`): must parse, else
      :class:`PayloadRejected`; data is re-serialised compactly (key order kept), type becomes ``application/json``.
    * other content type: passed through verbatim with the raw bytes.
    * none (or empty): JSON if it parses (``application/json``), else ``application/octet-stream``.
    """
    if content_type:
        if not _is_json(content_type):
            return content_type, payload
        try:
            return CONTENT_TYPE_JSON, orjson.dumps(orjson.loads(payload))
        except orjson.JSONDecodeError as e:
            raise PayloadRejected(f"payload declared as {content_type!r} is not valid JSON: {e}") from None
    try:
        return CONTENT_TYPE_JSON, orjson.dumps(orjson.loads(payload))
    except orjson.JSONDecodeError:
        return CONTENT_TYPE_OCTET_STREAM, payload


_json_types: dict[str, bool] = {}


def _is_json(content_type: str) -> bool:
    """:func:`is_json_content_type`, remembered for the few content types a deployment sees."""
    known = _json_types.get(content_type)
    if known is None:
        known = is_json_content_type(content_type)
        if len(_json_types) < 1024:
            _json_types[content_type] = known
    return known
