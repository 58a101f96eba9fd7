"""JWTs: Kedge's own issuer and the OIDC verifier against a real JWKS server on loopback."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from registry.access.errors import AccessUnavailable, InvalidJwt
from registry.access.identity import roles_from_claims
from registry.access.jwts import LocalIssuer, OidcVerifier
from tests.registry.access.fake_oidc import FakeIssuer


@pytest.fixture
def issuer(rsa_key: rsa.RSAPrivateKey) -> LocalIssuer:
    return LocalIssuer(rsa_key, issuer="kedge", audience="kedge")


async def test_issue_and_verify(issuer: LocalIssuer) -> None:
    token, exp = issuer.issue(user_id="u1", username="alice", roles=["drogue-admin", "x"], ttl_s=60)
    claims = await issuer.verifier().verify(token)
    assert claims["sub"] == "u1" and claims["preferred_username"] == "alice"
    assert claims["realm_access"] == {"roles": ["drogue-admin", "x"]}
    assert claims["exp"] == exp and exp - claims["iat"] == 60
    assert jwt.get_unverified_header(token)["kid"] == issuer.kid
    assert roles_from_claims(claims) == {"drogue-admin", "x"}


async def test_expired(issuer: LocalIssuer) -> None:
    token, _ = issuer.issue(user_id="u1", username="a", roles=[], ttl_s=5, now=time.time() - 60)
    with pytest.raises(InvalidJwt, match="expired"):
        await issuer.verifier().verify(token)


async def test_bad_signature(issuer: LocalIssuer, other_rsa_key: rsa.RSAPrivateKey) -> None:
    forged = LocalIssuer(other_rsa_key, issuer="kedge", audience="kedge")
    token, _ = forged.issue(user_id="u1", username="a", roles=["drogue-admin"], ttl_s=60)
    with pytest.raises(InvalidJwt):
        await issuer.verifier().verify(token)
    # same kid as the real key, still the wrong signature
    good, _ = issuer.issue(user_id="u1", username="a", roles=[], ttl_s=60)
    head, payload, _sig = good.split(".")
    _h, _p, forged_sig = token.split(".")
    with pytest.raises(InvalidJwt, match="signature"):
        await issuer.verifier().verify(f"{head}.{payload}.{forged_sig}")


async def test_tampered_payload(issuer: LocalIssuer) -> None:
    good, _ = issuer.issue(user_id="u1", username="a", roles=[], ttl_s=60)
    head, _payload, sig = good.split(".")
    evil = jwt.utils.base64url_encode(
        json.dumps(
            {
                "sub": "u1",
                "iss": "kedge",
                "aud": "kedge",
                "exp": int(time.time()) + 60,
                "realm_access": {"roles": ["drogue-admin"]},
            }
        ).encode()
    ).decode()
    with pytest.raises(InvalidJwt, match="signature"):
        await issuer.verifier().verify(f"{head}.{evil}.{sig}")


async def test_wrong_audience_and_issuer(rsa_key: rsa.RSAPrivateKey, issuer: LocalIssuer) -> None:
    other_aud = LocalIssuer(rsa_key, issuer="kedge", audience="someone-else")
    token, _ = other_aud.issue(user_id="u1", username="a", roles=[], ttl_s=60)
    with pytest.raises(InvalidJwt, match="audience"):
        await issuer.verifier().verify(token)
    other_iss = LocalIssuer(rsa_key, issuer="evil", audience="kedge")
    token, _ = other_iss.issue(user_id="u1", username="a", roles=[], ttl_s=60)
    with pytest.raises(InvalidJwt, match="issuer"):
        await issuer.verifier().verify(token)


async def test_symmetric_and_none_algorithms_refused(issuer: LocalIssuer) -> None:
    claims = {"sub": "u1", "iss": "kedge", "aud": "kedge", "exp": int(time.time()) + 60}
    # HS256 keyed with the public key (the classic key-confusion attack) and alg=none
    hs = jwt.encode(claims, "s" * 64, algorithm="HS256", headers={"kid": issuer.kid})
    none = jwt.encode(claims, "", algorithm="none")
    for token in (hs, none, "not-a-jwt", ""):
        with pytest.raises(InvalidJwt):
            await issuer.verifier().verify(token)


def test_roles_from_claims_keycloak_shape() -> None:
    claims: dict[str, Any] = {
        "realm_access": {"roles": ["a", 1]},
        "resource_access": {
            "services": {"roles": ["b"]},
            "drogue": {"roles": ["c"]},
            "other": {"roles": ["d"]},
        },
    }
    assert roles_from_claims(claims) == {"a", "b", "c"}
    assert roles_from_claims({"realm_access": "x", "resource_access": []}) == frozenset()


# ------------------------------------------------------------------------------------------- OIDC/JWKS


async def test_oidc_valid_token_and_cache(oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey) -> None:
    oidc.publish(rsa_key)
    verifier = OidcVerifier(oidc.url, audience="drogue")
    for _ in range(3):
        claims = await verifier.verify(oidc.sign(rsa_key))
        assert claims["sub"] == "kc-user-1"
    assert oidc.fetches == 1, "the key set is cached"


async def test_oidc_rejections(oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> None:
    oidc.publish(rsa_key)
    verifier = OidcVerifier(oidc.url, audience="drogue", min_refresh_s=0)
    with pytest.raises(InvalidJwt, match="audience"):
        await verifier.verify(oidc.sign(rsa_key, aud="account"))
    with pytest.raises(InvalidJwt, match="expired"):
        await verifier.verify(oidc.sign(rsa_key, exp_in=-30))
    with pytest.raises(InvalidJwt, match="issuer"):
        await verifier.verify(oidc.sign(rsa_key, iss="http://evil.example/realms/drogue"))
    with pytest.raises(InvalidJwt, match="unknown key"):
        await verifier.verify(oidc.sign(other_rsa_key))


async def test_oidc_key_rotation_refetches(
    oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    oidc.publish(rsa_key)
    verifier = OidcVerifier(oidc.url, audience=None, min_refresh_s=0)
    await verifier.verify(oidc.sign(rsa_key))
    oidc.publish(rsa_key, other_rsa_key)
    claims = await verifier.verify(oidc.sign(other_rsa_key))
    assert claims["preferred_username"] == "alice"
    assert oidc.fetches == 2


async def test_oidc_issuer_unreachable_is_unavailable(oidc: FakeIssuer, rsa_key: rsa.RSAPrivateKey) -> None:
    url = oidc.url
    oidc.server.shutdown()
    oidc.server.server_close()
    verifier = OidcVerifier(url, audience="drogue", timeout_s=2)
    with pytest.raises(AccessUnavailable):
        await verifier.verify(oidc.sign(rsa_key))
