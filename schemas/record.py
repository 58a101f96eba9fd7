"""A small JSON record codec driven by dataclass fields and their type hints.

The internal topics' records (``schemas.state``) are frozen dataclasses that mix in :class:`Record`: each
serialises to one JSON object (orjson) with a ``kind`` discriminator, so one topic can carry several kinds;
``bytes`` fields are base64 strings, nested records are objects, ``StrEnum`` fields their values. Decoding
ignores unknown fields (forward compatible) and raises :class:`MalformedRecord` for anything else that is
wrong: not JSON, not an object, unknown ``kind``, a missing, null or mistyped field, an empty required string.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import types
import typing
from enum import StrEnum
from typing import Any, ClassVar, Self, TypeVar, Union

import orjson

__all__ = ["MalformedRecord", "Record", "decode_kind", "load"]


class MalformedRecord(ValueError):
    """A record could not be decoded: not JSON, wrong ``kind``, missing or mistyped field."""


_R = TypeVar("_R", bound="Record")


class Record:
    """Mixin: JSON codec driven by the dataclass fields and their type hints."""

    __slots__ = ()
    KIND: ClassVar[str]
    #: string fields that must not be empty
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.KIND}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _encode(getattr(self, f.name))
        return out

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("kind") != cls.KIND:
            raise MalformedRecord(f"expected kind {cls.KIND!r}, got {data.get('kind')!r}")
        return _decode_record(cls, data)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview | str) -> Self:
        return cls.from_dict(load(raw))


def decode_kind(kinds: dict[str, type[_R]], data: dict[str, Any]) -> _R:
    """Decode ``data`` as the record class its ``kind`` names in ``kinds``."""
    kind = data.get("kind")
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MalformedRecord(f"unknown record kind {kind!r}")
    return _decode_record(cls, data)


def load(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse one record's JSON object (:class:`MalformedRecord` if it is not one)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise MalformedRecord(f"not JSON: {e}") from None
    if not isinstance(data, dict):
        raise MalformedRecord("a record is a JSON object")
    return data


def _encode(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Record):
        d = value.to_dict()
        del d["kind"]
        return d
    return value  # str, int, float, bool, None, StrEnum (orjson writes the value)


_HINTS: dict[type, dict[str, Any]] = {}


def _decode_record(cls: type[_R], data: dict[str, Any]) -> _R:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _decode_value(hints[f.name], data[f.name], f.name)
        elif f.default is dataclasses.MISSING:
            raise MalformedRecord(f"{cls.KIND}: missing field {f.name!r}")
    for name in cls.REQUIRED:
        if name in kwargs and not kwargs[name]:
            raise MalformedRecord(f"{cls.KIND}: field {name!r} must not be empty")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise MalformedRecord(f"{cls.KIND}: {e}") from None


def _decode_value(tp: Any, value: object, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise MalformedRecord(f"field {name!r} must not be null")
        (inner,) = (a for a in args if a is not type(None))
        return _decode_value(inner, value, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is bytes:
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise MalformedRecord(f"field {name!r} is not base64") from None
    elif isinstance(tp, type) and issubclass(tp, StrEnum):
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                raise MalformedRecord(f"field {name!r}: unknown value {value!r}") from None
    elif isinstance(tp, type) and issubclass(tp, Record) and isinstance(value, dict):
        return _decode_record(tp, value)
    raise MalformedRecord(f"field {name!r}: unexpected {type(value).__name__}")
