"""Kubernetes-style label selectors (reference §8.1 ``?labels=``): a pure parser and matcher.

Grammar (comma = AND; whitespace around tokens is ignored)::

    selector    := requirement ("," requirement)*
    requirement := key | "!" key | key ("=" | "==" | "!=") value | key ("in" | "notin") "(" values ")"
    values      := value ("," value)*

``k!=v`` and ``k notin (…)`` also match resources without the label (Kubernetes semantics).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Op = Literal["exists", "not_exists", "eq", "ne", "in", "notin"]

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(_KEY)
_VALUE_RE = re.compile(_VALUE)
_SET_RE = re.compile(rf"\s*({_KEY})\s+(in|notin)\s*\((.*)\)\s*", re.DOTALL)
_CMP_RE = re.compile(rf"\s*({_KEY})\s*(==|!=|=)\s*(.*?)\s*", re.DOTALL)


class SelectorError(ValueError):
    """The selector text is not valid; the message says which part."""


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: Op
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.op:
            case "exists":
                return present
            case "not_exists":
                return not present
            case "eq" | "in":
                return present and labels[self.key] in self.values
            case "ne" | "notin":
                return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split(text: str) -> list[str]:
    """Split at top-level commas (commas inside ``( … )`` belong to a value set)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
            if depth > 1:
                raise SelectorError("nested parentheses in label selector")
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError("unbalanced ')' in label selector")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth != 0:
        raise SelectorError("unbalanced '(' in label selector")
    parts.append("".join(current))
    return parts


def _value(text: str, part: str) -> str:
    if not _VALUE_RE.fullmatch(text):
        raise SelectorError(f"invalid label value {text!r} in {part.strip()!r}")
    return text


def _requirement(part: str) -> Requirement:
    stripped = part.strip()
    if not stripped:
        raise SelectorError("empty requirement in label selector")
    if m := _SET_RE.fullmatch(part):
        key, op, inner = m.group(1), m.group(3), m.group(4)
        values = [v.strip() for v in inner.split(",")]
        if values == [""]:
            raise SelectorError(f"empty value set in {stripped!r}")
        return Requirement(key, "in" if op == "in" else "notin", frozenset(_value(v, part) for v in values))
    if m := _CMP_RE.fullmatch(part):
        key, op, value = m.group(1), m.group(3), m.group(4)
        return Requirement(key, "ne" if op == "!=" else "eq", frozenset({_value(value, part)}))
    if stripped.startswith("!"):
        key = stripped[1:].strip()
        if _KEY_RE.fullmatch(key):
            return Requirement(key, "not_exists")
    elif _KEY_RE.fullmatch(stripped):
        return Requirement(stripped, "exists")
    raise SelectorError(f"invalid label selector requirement {stripped!r}")


def parse(text: str | None) -> Selector:
    """Parse a selector; ``None`` or blank text selects everything. Raises :class:`SelectorError`."""
    if text is None or not text.strip():
        return Selector()
    return Selector(tuple(_requirement(part) for part in _split(text)))


def parse_many(texts: list[str]) -> Selector:
    """Several ``labels=`` query parameters are ANDed."""
    requirements: list[Requirement] = []
    for text in texts:
        requirements.extend(parse(text).requirements)
    return Selector(tuple(requirements))
