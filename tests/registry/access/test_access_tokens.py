"""Access token format (Drogue's rng.rs): generation, syntactic validation, CRC, hashing."""

from __future__ import annotations

import hashlib
import string
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.access import tokens

ALNUM = string.ascii_letters + string.digits


def test_base62_vectors() -> None:
    # the Rust crate's documented example and the alphabet order 0-9, A-Z, a-z
    assert tokens.base62_encode(1234567890) == "1LY7VK"
    assert [tokens.base62_encode(n) for n in (0, 9, 10, 35, 36, 61, 62)] == [
        "0",
        "9",
        "A",
        "Z",
        "a",
        "z",
        "10",
    ]
    assert tokens.base62_encode(2**32 - 1) == "4gfFC3"
    assert tokens.base62_decode("1LY7VK") == 1234567890
    with pytest.raises(ValueError):
        tokens.base62_decode("")
    with pytest.raises(ValueError):
        tokens.base62_decode("ab-c")


@given(st.integers(min_value=0, max_value=2**64))
def test_base62_roundtrip(n: int) -> None:
    assert tokens.base62_decode(tokens.base62_encode(n)) == n


def test_crc_is_crc32_ieee() -> None:
    assert zlib.crc32(b"123456789") == 0xCBF43926  # the CRC-32/IEEE check value
    body = "drg_a1B2c3_" + "abcdefghijklmnopqrstuvwxyz0123"
    token = body + tokens.base62_encode(zlib.crc32(body.encode()))
    assert tokens.is_valid(token)
    assert tokens.prefix_of(token) == "drg_a1B2c3"


def test_generated_token_shape() -> None:
    for _ in range(200):
        generated = tokens.generate()
        t = generated.token
        assert tokens.is_valid(t), t
        assert 42 <= len(t) <= 47
        assert t.startswith("drg_") and t[10] == "_"
        assert generated.prefix == t[:10] == tokens.prefix_of(t)
        assert all(c in ALNUM for c in t[4:10] + t[11:])
        assert "***" in repr(generated) and t not in repr(generated)


def test_tampering_any_single_character_is_rejected() -> None:
    token = tokens.generate().token
    for i, original in enumerate(token):
        for replacement in ("A", "z", "0", "_"):
            if replacement == original:
                continue
            tampered = token[:i] + replacement + token[i + 1 :]
            assert not tokens.is_valid(tampered), (i, tampered)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "drg_",
        "drg_a1B2c3_abcdefghijklmnopqrstuvwxyz0123",  # no CRC (41 chars)
        "xrg_a1B2c3_abcdefghijklmnopqrstuvwxyz0123" + "0",
        "drg_a1B2c3-abcdefghijklmnopqrstuvwxyz0123" + "0",
        "drg_a1B2c3_abcdefghijklmnopqrstuvwxyz01é3" + "0",
        "drg_a1B2c3_abcdefghijklmnopqrstuvwxyz0123" + "0000000",  # too long
        "Bearer x",
    ],
)
def test_malformed_tokens(bad: str) -> None:
    assert not tokens.is_valid(bad)


def test_crc_must_be_canonical() -> None:
    token = tokens.generate().token
    padded = token[:41] + "0" + token[41:]  # same value with a leading zero digit
    assert not tokens.is_valid(padded)


def test_hash_is_sha3_512_hex() -> None:
    assert tokens.hash_token("abc") == (
        "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e"
        "10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"
    )
    t = tokens.generate().token
    stored = tokens.hash_token(t)
    assert stored == hashlib.sha3_512(t.encode()).hexdigest() and len(stored) == 128
    assert tokens.token_matches(t, stored)
    assert tokens.token_matches(t, stored.upper())
    assert not tokens.token_matches(t[:-1] + ("A" if t[-1] != "A" else "B"), stored)
