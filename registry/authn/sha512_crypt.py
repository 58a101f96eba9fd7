"""SHA-512 crypt (``$6$``, Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"), verification only.

Pure Python over :mod:`hashlib` (the stdlib ``crypt`` module is deprecated and gone in 3.13; ``passlib`` is
unmaintained). Tested against the specification's test vectors.
"""

from __future__ import annotations

import hashlib
import hmac

_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DEFAULT_ROUNDS = 5000
_MIN_ROUNDS = 1000
_MAX_ROUNDS = 999_999_999
_PERMUTATION = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4), (47, 5, 26), (6, 27, 48), (28, 49, 7),
    (50, 8, 29), (9, 30, 51), (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19), (62, 20, 41),
)


class MalformedHash(ValueError):
    """The stored value is not a ``$6$`` hash."""


def _b64(b2: int, b1: int, b0: int, n: int) -> str:
    w = (b2 << 16) | (b1 << 8) | b0
    out = []
    for _ in range(n):
        out.append(_ALPHABET[w & 0x3F])
        w >>= 6
    return "".join(out)


def _repeat(digest: bytes, length: int) -> bytes:
    return (digest * (length // len(digest) + 1))[:length]


def _hash(password: bytes, salt: bytes, rounds: int) -> str:
    b = hashlib.sha512(password + salt + password).digest()
    a = hashlib.sha512(password + salt)
    n = len(password)
    a.update(_repeat(b, n))
    i = n
    while i > 0:
        a.update(b if i & 1 else password)
        i >>= 1
    c = a.digest()
    p = _repeat(hashlib.sha512(password * n).digest(), n)
    s = _repeat(hashlib.sha512(salt * (16 + c[0])).digest(), len(salt))
    for r in range(rounds):
        ctx = hashlib.sha512(p if r & 1 else c)
        if r % 3:
            ctx.update(s)
        if r % 7:
            ctx.update(p)
        ctx.update(c if r & 1 else p)
        c = ctx.digest()
    encoded = "".join(_b64(c[x], c[y], c[z], 4) for x, y, z in _PERMUTATION)
    return encoded + _b64(0, 0, c[63], 2)


def _parse(setting: str) -> tuple[bytes, int, bool]:
    if not setting.startswith("$6$"):
        raise MalformedHash("not a SHA-512 crypt hash ($6$…)")
    rest = setting[3:]
    rounds, custom = _DEFAULT_ROUNDS, False
    if rest.startswith("rounds="):
        spec, sep, rest = rest.partition("$")
        if not sep or not spec[7:].isdigit():
            raise MalformedHash("bad rounds= field")
        rounds, custom = max(_MIN_ROUNDS, min(_MAX_ROUNDS, int(spec[7:]))), True
    salt = rest.split("$", 1)[0][:16]
    return salt.encode(), rounds, custom


def crypt(password: str, setting: str) -> str:
    """The full ``$6$[rounds=N$]salt$hash`` string of ``password`` with the salt/rounds of ``setting``."""
    salt, rounds, custom = _parse(setting)
    head = f"$6$rounds={rounds}$" if custom else "$6$"
    return f"{head}{salt.decode()}${_hash(password.encode(), salt, rounds)}"


def verify(password: str, hashed: str) -> bool:
    """Does ``password`` match the stored ``$6$`` hash? Raises :class:`MalformedHash` for a bad hash."""
    return hmac.compare_digest(crypt(password, hashed).encode(), hashed.encode())
