"""Per-app topic names: reference §1.1 algorithm and vectors, with the §17 fix for '.'."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.names import app_topic

_LEGAL = re.compile(r"[a-zA-Z0-9._-]{1,249}")


@pytest.mark.parametrize(
    ("app", "topic"),
    [  # Drogue's own unit-test vectors (service-api/src/kafka/mod.rs)
        ("foo", "events-foo"),
        ("00foo", "events-00foo"),
        ("FOO", "evt-901890a8e9c8cf6d5a1a542b229febff-foo"),
        ("foo-", "evt-03f19ca8da08c40c2d036c8915d383e2-foo"),
        ("0123456789" * 7, "evt-109eb12c10c45d94ddac8eca7b818bed-01234567890123456789012345"),
    ],
)
def test_drogue_vectors(app: str, topic: str) -> None:
    assert app_topic(app) == topic


def test_dotted_names_are_used_as_they_are() -> None:
    """§17 row 14.2: '.' is a legal topic character; Drogue's regex bug hashed every dotted name."""
    assert app_topic("foo.bar") == "events-foo.bar"
    assert app_topic("a.b.c") == "events-a.b.c"


@pytest.mark.parametrize("app", ["foo..bar", ".foo", "foo.", "foo.-bar", "foo_bar", "a/b", "a#b", "a+b", "ä", "a\x00"])
def test_names_that_are_not_dns_subdomains_are_hashed(app: str) -> None:
    assert app_topic(app).startswith("evt-")


def test_length_boundary() -> None:
    assert app_topic("a" * 55) == "events-" + "a" * 55  # 62 characters: still direct
    assert app_topic("a" * 56).startswith("evt-")  # 63 would be too long for Drogue's rule


@given(st.text(min_size=1, max_size=300))
def test_every_name_gives_a_legal_distinct_topic(app: str) -> None:
    try:
        topic = app_topic(app)
    except UnicodeEncodeError:
        return
    assert _LEGAL.fullmatch(topic) and len(topic) <= 63
    assert topic not in {".", ".."}
