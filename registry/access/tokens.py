"""Access tokens (API keys) in Drogue's format (reference §9, ``access-token-service/src/rng.rs``). Pure.

A token is ``drg_`` + 6 alphanumerics (the *prefix*, 10 chars), ``_``, 30 alphanumerics, then
``base62(crc32(first 41 chars))`` (standard alphabet ``0-9A-Za-z``, 1-6 chars). A token is therefore 42-47
characters long and can be checked syntactically (length, prefix, CRC) without any lookup. Only the sha3-512
hex digest of a token is ever stored; the full token is shown to its owner once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib
from dataclasses import dataclass

__all__ = [
    "GeneratedToken",
    "base62_decode",
    "base62_encode",
    "generate",
    "hash_token",
    "is_valid",
    "prefix_of",
    "token_matches",
]

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
ALNUM = string.ascii_letters + string.digits
PREFIX_MARK = "drg_"
PREFIX_RANDOM = 6
KEY_RANDOM = 30
#: ``drg_`` + 6 + ``_`` + 30: the part the CRC covers
BODY_LEN = len(PREFIX_MARK) + PREFIX_RANDOM + 1 + KEY_RANDOM
PREFIX_LEN = len(PREFIX_MARK) + PREFIX_RANDOM
MIN_LEN = BODY_LEN + 1
MAX_LEN = BODY_LEN + 6


@dataclass(frozen=True, slots=True)
class GeneratedToken:
    prefix: str
    token: str

    def __repr__(self) -> str:  # never leak the secret into logs
        return f"GeneratedToken(prefix={self.prefix!r}, token='***')"


def base62_encode(value: int) -> str:
    """Encode a non-negative integer in base62, standard alphabet (Rust crate ``base62``: ``encode``)."""
    if value < 0:
        raise ValueError("base62 encodes non-negative integers")
    if value == 0:
        return "0"
    out = []
    while value:
        value, rem = divmod(value, 62)
        out.append(BASE62[rem])
    return "".join(reversed(out))


def base62_decode(text: str) -> int:
    """Inverse of :func:`base62_encode`; ``ValueError`` on an empty string or a non-base62 character."""
    if not text:
        raise ValueError("empty base62 string")
    value = 0
    for ch in text:
        digit = BASE62.find(ch)
        if digit < 0:
            raise ValueError(f"not a base62 digit: {ch!r}")
        value = value * 62 + digit
    return value


def _crc(body: str) -> str:
    return base62_encode(zlib.crc32(body.encode("ascii")))


def _random_alnum(n: int) -> str:
    return "".join(secrets.choice(ALNUM) for _ in range(n))


def generate() -> GeneratedToken:
    """A fresh random token and its prefix."""
    prefix = PREFIX_MARK + _random_alnum(PREFIX_RANDOM)
    body = f"{prefix}_{_random_alnum(KEY_RANDOM)}"
    return GeneratedToken(prefix=prefix, token=body + _crc(body))


def is_valid(token: str) -> bool:
    """Syntactic check: length 42-47, ``drg_`` prefix, alphanumeric parts, CRC matches (canonical form)."""
    if not (MIN_LEN <= len(token) <= MAX_LEN) or not token.isascii():
        return False
    body, crc = token[:BODY_LEN], token[BODY_LEN:]
    if not body.startswith(PREFIX_MARK) or body[PREFIX_LEN] != "_":
        return False
    if not (body[len(PREFIX_MARK) : PREFIX_LEN].isalnum() and body[PREFIX_LEN + 1 :].isalnum()):
        return False
    return hmac.compare_digest(crc, _crc(body))


def prefix_of(token: str) -> str:
    """The lookup prefix (``drg_xxxxxx``) of a token (check :func:`is_valid` first)."""
    return token[:PREFIX_LEN]


def hash_token(token: str) -> str:
    """The stored form of a token: sha3-512, lowercase hex."""
    return hashlib.sha3_512(token.encode("utf-8")).hexdigest()


def token_matches(token: str, hashed: str) -> bool:
    """Constant-time comparison of a presented token with a stored hash."""
    return hmac.compare_digest(hash_token(token), hashed.lower())
