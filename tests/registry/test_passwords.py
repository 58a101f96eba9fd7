"""Password checks: sha512-crypt against the specification's vectors, bcrypt, plain; the cache."""

from __future__ import annotations

import bcrypt
import pytest

from registry.authn import passwords, sha512_crypt
from registry.authn.cache import VerificationCache, cache_key
from schemas.auth import AuthOutcome, AuthResult
from schemas.registry import BcryptPassword, PlainPassword, Sha512Password

# Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512", test vectors for SHA-512
VECTORS = [
    ("$6$saltstring", "Hello world!",
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("$6$rounds=10000$saltstringsaltstring", "Hello world!",
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs"
     "/y3RnOaw5v."),
    ("$6$rounds=5000$toolongsaltstring", "This is just a test",
     "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxx"
     "l8audkUEm0"),
    ("$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over more"
     "than one line.",
     "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDw"
     "Gqd8p4ur1"),
    ("$6$rounds=10$roundstoolow", "the minimum number is still observed",
     "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBa"
     "HHrsX."),
]


@pytest.mark.parametrize(("setting", "password", "expected"), VECTORS)
def test_sha512_crypt_vectors(setting: str, password: str, expected: str) -> None:
    assert sha512_crypt.crypt(password, setting) == expected
    assert sha512_crypt.verify(password, expected)
    assert not sha512_crypt.verify(password + "x", expected)


def test_sha512_malformed() -> None:
    for bad in ("$5$abc$def", "plain", "$6$rounds=x$salt$hash"):
        with pytest.raises(sha512_crypt.MalformedHash):
            sha512_crypt.verify("x", bad)


async def test_verify_each_form() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    assert await passwords.verify("pw", "pw") and not await passwords.verify("pw", "px")
    assert await passwords.verify(PlainPassword(plain="pw"), "pw")
    assert await passwords.verify(BcryptPassword(bcrypt=hashed), "pw")
    assert not await passwords.verify(BcryptPassword(bcrypt=hashed), "px")
    assert not await passwords.verify(BcryptPassword(bcrypt="not-a-hash"), "pw")
    assert await passwords.verify(Sha512Password(sha512=VECTORS[0][2]), "Hello world!")
    assert not await passwords.verify(Sha512Password(sha512="garbage"), "Hello world!")


def test_cache_bounds_and_invalidation() -> None:
    now = [0.0]
    cache = VerificationCache(max_size=2, ttl_s=10, clock=lambda: now[0])
    ok = AuthResult(AuthOutcome.PASS)
    k1, k2, k3 = (cache_key("a", d, "pass", "", "s") for d in ("d1", "d2", "d3"))
    assert len({k1, k2, k3, cache_key("a", "d1", "pass", "", "t")}) == 4
    cache.put(k1, ok, "a", "d1")
    cache.put(k2, ok, "a", "d2")
    assert cache.get(k1) is ok
    cache.put(k3, ok, "b", "d3")  # evicts the least recently used (k2)
    assert cache.get(k2) is None and cache.get(k1) is ok and len(cache) == 2
    assert cache.invalidate("a", "d1") == 1 and cache.get(k1) is None
    cache.put(k1, ok, "a", "d1")
    now[0] = 11.0
    assert cache.get(k1) is None and cache.get(k3) is None  # aged out
    cache.put(k1, ok, "a", "d1")
    cache.put(k2, ok, "a", "d2")
    assert cache.invalidate("a") == 2 and len(cache) == 0
    assert cache_key("a", "b\x00", "c", "", "") != cache_key("a", "b", "\x00c", "", "")


def test_cache_invalidation_by_presented_name() -> None:
    cache = VerificationCache(max_size=10, ttl_s=10)
    key = cache_key("a", "alias", "pass", "", "s")
    cache.put(key, AuthResult(AuthOutcome.PASS), "a", "real", presented="alias")
    assert cache.invalidate("a", "alias") == 1 and cache.get(key) is None
    cache.put(key, AuthResult(AuthOutcome.PASS), "a", "real", presented="alias")
    assert cache.invalidate("a", "real") == 1 and len(cache) == 0
