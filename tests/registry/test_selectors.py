"""The label selector parser and matcher (pure)."""

from __future__ import annotations

import pytest

from registry.selectors import Requirement, SelectorError, parse, parse_many


@pytest.mark.parametrize(("text", "expected"), [
    ("a", [Requirement("a", "exists")]),
    ("!a", [Requirement("a", "not_exists")]),
    (" ! a ", [Requirement("a", "not_exists")]),
    ("a=b", [Requirement("a", "eq", frozenset({"b"}))]),
    ("a==b", [Requirement("a", "eq", frozenset({"b"}))]),
    ("a != b", [Requirement("a", "ne", frozenset({"b"}))]),
    ("a=", [Requirement("a", "eq", frozenset({""}))]),
    ("a in (x, y)", [Requirement("a", "in", frozenset({"x", "y"}))]),
    ("a notin (x)", [Requirement("a", "notin", frozenset({"x"}))]),
    ("example.com/k=v", [Requirement("example.com/k", "eq", frozenset({"v"}))]),
    ("a,b=c,d in (e,f),!g", [Requirement("a", "exists"), Requirement("b", "eq", frozenset({"c"})),
                             Requirement("d", "in", frozenset({"e", "f"})), Requirement("g", "not_exists")]),
])
def test_parse(text: str, expected: list[Requirement]) -> None:
    assert list(parse(text).requirements) == expected


@pytest.mark.parametrize("text", ["=b", "a in (b", "a in b)", "a in ()", "a,,b", ",", "a b", "a=b c",
                                  "a in ((b))", "!", "a=-b", "a notin", "-a"])
def test_invalid(text: str) -> None:
    with pytest.raises(SelectorError):
        parse(text)


def test_empty_selects_all() -> None:
    assert parse(None).matches({}) and parse("  ").matches({"a": "b"})


@pytest.mark.parametrize(("text", "labels", "match"), [
    ("a", {"a": ""}, True),
    ("a", {}, False),
    ("!a", {}, True),
    ("!a", {"a": "1"}, False),
    ("a=1", {"a": "1"}, True),
    ("a=1", {"a": "2"}, False),
    ("a=1", {}, False),
    ("a!=1", {}, True),
    ("a!=1", {"a": "1"}, False),
    ("a in (1,2)", {"a": "2"}, True),
    ("a in (1,2)", {}, False),
    ("a notin (1,2)", {}, True),
    ("a notin (1,2)", {"a": "1"}, False),
    ("a=1,b", {"a": "1"}, False),
    ("a=1,b", {"a": "1", "b": "x"}, True),
])
def test_matches(text: str, labels: dict[str, str], match: bool) -> None:
    assert parse(text).matches(labels) is match


def test_several_parameters_are_anded() -> None:
    sel = parse_many(["a=1", "b"])
    assert sel.matches({"a": "1", "b": ""}) and not sel.matches({"a": "1"})
