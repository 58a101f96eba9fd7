"""The ONE partition-key function: Rust NON_ALPHANUMERIC percent-encoding (reference §1.2)."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.keys import app_key, device_key, pct


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("dev1", "dev1"),
        ("my-app", "my%2Dapp"),
        ("dev-1", "dev%2D1"),
        ("a_b.c~d", "a%5Fb%2Ec%7Ed"),
        ("a/b", "a%2Fb"),
        ("ä", "%C3%A4"),
        ("", ""),
        ("#+ \x00", "%23%2B%20%00"),
    ],
)
def test_pct_encodes_every_non_alphanumeric_byte(raw: str, encoded: str) -> None:
    assert pct(raw) == encoded


def test_device_key_is_app_slash_device() -> None:
    assert device_key("my-app", "dev-1") == "my%2Dapp/dev%2D1"
    assert app_key("my-app") == "my%2Dapp"


@given(st.text())
def test_pct_round_trips_and_never_leaves_a_separator(s: str) -> None:
    try:
        encoded = pct(s)
    except UnicodeEncodeError:  # lone surrogates cannot be a Rust &str either
        return
    assert unquote(encoded) == s
    assert "/" not in encoded and "-" not in encoded
    assert set(encoded) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%")


@given(st.text(min_size=1), st.text(min_size=1), st.text(min_size=1), st.text(min_size=1))
def test_distinct_devices_have_distinct_keys(a1: str, d1: str, a2: str, d2: str) -> None:
    try:
        k1, k2 = device_key(a1, d1), device_key(a2, d2)
    except UnicodeEncodeError:
        return
    assert (k1 == k2) == ((a1, d1) == (a2, d2))
