"""JWTs: Kedge's own issuer (RS256) and verifiers for it and for an external OIDC issuer (JWKS).

Kedge signs with RS256 so that verification is the same public-key path for its own tokens and for
production OIDC tokens; the local issuer also publishes its key (``/.well-known/jwks.json``), so any process
can be pointed at the API host as an OIDC issuer. Claims are Keycloak-like: ``sub`` (user id),
``preferred_username``, ``realm_access.roles``, ``iat``, ``exp``, ``iss``, ``aud``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from registry.access.errors import AccessUnavailable, InvalidJwt

__all__ = ["JwtVerifier", "LocalIssuer", "OidcVerifier", "StaticKeyVerifier", "jwk_thumbprint"]

#: asymmetric algorithms only: never HS* (key confusion) nor "none"
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class JwtVerifier(Protocol):
    """Validates a JWT and returns its claims; :class:`InvalidJwt` when it is not acceptable,
    :class:`AccessUnavailable` when the keys cannot be fetched."""

    async def verify(self, token: str) -> dict[str, Any]: ...


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RSA public JWK, base64url without padding (used as ``kid``)."""
    canonical = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_claims(claims: dict[str, Any], issuer: str) -> dict[str, Any]:
    iss = claims.get("iss")
    if not isinstance(iss, str) or iss.rstrip("/") != issuer.rstrip("/"):
        raise InvalidJwt("JWT issuer mismatch")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidJwt("JWT has no subject")
    if not isinstance(claims.get("exp"), int | float):
        raise InvalidJwt("JWT has no expiry")
    return claims


def _decode(token: str, key: Any, algorithm: str, issuer: str, audience: str | None) -> dict[str, Any]:
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            options={
                "require": ["exp", "sub", "iss"],
                "verify_aud": audience is not None,
                "verify_iss": False,
            },
        )
    except jwt.ExpiredSignatureError as e:
        raise InvalidJwt("JWT expired") from e
    except jwt.InvalidAudienceError as e:
        raise InvalidJwt("JWT audience mismatch") from e
    except jwt.InvalidSignatureError as e:
        raise InvalidJwt("JWT signature invalid") from e
    except jwt.PyJWTError as e:
        raise InvalidJwt(f"Invalid JWT: {e}") from e
    return _check_claims(claims, issuer)


def _header(token: str) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise InvalidJwt(f"Invalid JWT: {e}") from e
    alg = header.get("alg")
    if alg not in ASYMMETRIC:
        raise InvalidJwt(f"JWT algorithm not accepted: {alg!r}")
    return header


class LocalIssuer:
    """Kedge's own token issuer: an RSA key (from the data dir), issuer name and audience."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, issuer: str, audience: str) -> None:
        self._key = private_key
        self.issuer = issuer
        self.audience = audience
        self.public_jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
        self.kid = jwk_thumbprint(self.public_jwk)
        self.public_jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})

    def issue(
        self,
        *,
        user_id: str,
        username: str,
        roles: Iterable[str],
        ttl_s: float,
        now: float | None = None,
    ) -> tuple[str, int]:
        """A signed JWT for the user and its ``exp``; ``now`` (epoch seconds) is injectable for tests."""
        issued = int(time.time() if now is None else now)
        exp = issued + max(1, int(ttl_s))
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": user_id,
            "preferred_username": username,
            "realm_access": {"roles": sorted(set(roles))},
            "iat": issued,
            "exp": exp,
            "typ": "Bearer",
        }
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})
        return token, exp

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk]}

    def verifier(self) -> StaticKeyVerifier:
        return StaticKeyVerifier({self.kid: self._key.public_key()}, issuer=self.issuer, audience=self.audience)


class StaticKeyVerifier:
    """Verifies RS256 JWTs against fixed public keys by ``kid`` (Kedge's own issuer)."""

    def __init__(self, keys: dict[str, rsa.RSAPublicKey], *, issuer: str, audience: str | None) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience

    async def verify(self, token: str) -> dict[str, Any]:
        header = _header(token)
        if header["alg"] != "RS256":
            raise InvalidJwt("JWT algorithm not accepted")
        key = self._keys.get(header.get("kid", "")) if len(self._keys) > 1 else next(iter(self._keys.values()))
        if key is None:
            raise InvalidJwt("JWT signed by an unknown key")
        return _decode(token, key, "RS256", self._issuer, self._audience)


class OidcVerifier:
    """Verifies JWTs of an external OIDC issuer (e.g. Keycloak's ``…/realms/drogue``).

    ``<issuer>/.well-known/openid-configuration`` names the ``jwks_uri``; the key set is cached for
    ``cache_s`` and refetched early (at most every ``min_refresh_s``) when a token names an unknown ``kid``
    (key rotation). The algorithm is taken from the matching key, never from the token alone.
    """

    def __init__(
        self,
        issuer: str,
        *,
        audience: str | None,
        cache_s: float = 300.0,
        min_refresh_s: float = 10.0,
        timeout_s: float = 5.0,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._keys: jwt.PyJWKSet | None = None
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self) -> jwt.PyJWKSet:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                discovery = (await client.get(url)).raise_for_status().json()
                jwks_uri = discovery["jwks_uri"]
                jwks = (await client.get(jwks_uri)).raise_for_status().json()
            return jwt.PyJWKSet.from_dict(jwks)
        except (httpx.HTTPError, KeyError, TypeError, ValueError, jwt.PyJWTError) as e:
            raise AccessUnavailable(f"Cannot fetch the OIDC issuer's keys from {url}: {e}") from e

    async def _key_set(self, *, refresh: bool) -> jwt.PyJWKSet:
        async with self._lock:
            age = time.monotonic() - self._fetched
            stale = self._keys is None or age > self._cache_s or (refresh and age > self._min_refresh_s)
            if stale:
                self._keys = await self._fetch()
                self._fetched = time.monotonic()
            assert self._keys is not None
            return self._keys

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: str | None) -> jwt.PyJWK | None:
        for key in keys.keys:
            if kid is None or key.key_id == kid:
                return key
        return None

    async def verify(self, token: str) -> dict[str, Any]:
        header = _header(token)
        kid = header.get("kid")
        key = self._find(await self._key_set(refresh=False), kid)
        if key is None:
            key = self._find(await self._key_set(refresh=True), kid)
        if key is None:
            raise InvalidJwt("JWT signed by an unknown key")
        if key.algorithm_name != header["alg"]:
            raise InvalidJwt("JWT algorithm does not match its key")
        return _decode(token, key.key, key.algorithm_name, self._issuer, self._audience)
