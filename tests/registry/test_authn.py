"""Device authentication (reference §5, §9): every credential kind, aliases, disabled/deleting, gateways,
the verification cache and its invalidation, the HTTP service, and fail-closed on database errors."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import bcrypt
import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI

from kedge.broker import free_port
from kedge.kafka import consumer as kafka_consumer
from kedge.settings import KafkaSettings
from registry.api import device_auth, errors
from registry.authn import certs
from registry.authn.authenticator import RegistryAuthenticator
from registry.authn.follow import follow_changes
from registry.db import create_engine
from schemas.auth import (
    AuthOutcome,
    AuthUnavailable,
    CertCredential,
    DeviceIdentity,
    PassCredential,
    UserCredential,
)
from tests.registry.conftest import Api
from tests.support.procs import eventually
from topology.names import REGISTRY

BASE = "/api/registry/v1alpha1"
SHA512 = ("$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBm"
          "SK6H9qs/y3RnOaw5v.")  # "Hello world!"

pytestmark = pytest.mark.integration


async def _setup(api: Api, unique: str, app_spec: dict[str, Any] | None = None) -> str:
    app = f"auth-{unique}"
    r = await api.alice.post(f"{BASE}/apps", json={"metadata": {"name": app}, "spec": app_spec or {}})
    assert r.status_code == 201, r.text
    hashed = bcrypt.hashpw(b"bcrypt-pw", bcrypt.gensalt(rounds=4)).decode()
    devices = [
        {"metadata": {"name": "d1"}, "spec": {
            "alias": ["alias-1"],
            "mqtt": {"dialect": {"type": "plainTopic", "devicePrefix": False}},
            "credentials": {"credentials": [
                {"pass": "plain-string"}, {"pass": {"plain": "plain-obj"}}, {"pass": {"bcrypt": hashed}},
                {"pass": {"sha512": SHA512}},
                {"user": {"username": "uniq", "password": "user-pw", "unique": True}},
                {"user": {"username": "d1", "password": "same-name-pw"}},
                {"user": {"username": "shared", "password": "shared-pw"}},
            ]}}},
        {"metadata": {"name": "gw"}, "spec": {"credentials": {"credentials": [{"pass": "gw-pw"}]}}},
        {"metadata": {"name": "behind"}, "spec": {"gatewaySelector": {"matchNames": ["gw"]}}},
        {"metadata": {"name": "off"}, "spec": {"core": {"disabled": True},
                                               "credentials": {"credentials": [{"pass": "off-pw"}]}}},
        {"metadata": {"name": "going", "finalizers": ["f"]},
         "spec": {"credentials": {"credentials": [{"pass": "going-pw"}]}}},
    ]
    for device in devices:
        r = await api.alice.post(f"{BASE}/apps/{app}/devices", json=device)
        assert r.status_code == 201, r.text
    assert (await api.alice.delete(f"{BASE}/apps/{app}/devices/going")).status_code == 204
    return app


async def test_credential_kinds(api: Api, unique: str) -> None:
    app = await _setup(api, unique)
    authn = RegistryAuthenticator(api.host.engine, cache_size=0)  # no cache: every call checks

    async def outcome(device: str, credential: Any, app_name: str = app) -> AuthOutcome:
        return (await authn.authenticate(app_name, device, credential)).outcome

    for pw in ("plain-string", "plain-obj", "bcrypt-pw", "Hello world!", "same-name-pw"):
        assert await outcome("d1", PassCredential(pw)) is AuthOutcome.PASS, pw
    assert await outcome("d1", PassCredential("wrong")) is AuthOutcome.FAIL
    assert await outcome("d1", PassCredential("user-pw")) is AuthOutcome.FAIL  # unique user needs its name
    # aliases: spec.alias and the username of a unique user credential
    assert await outcome("alias-1", PassCredential("plain-string")) is AuthOutcome.PASS
    result = await authn.authenticate(app, "uniq", PassCredential("user-pw"))
    assert result.ok and result.identity is not None and result.identity.device == "d1"
    assert result.identity.mqtt_dialect == {"type": "plainTopic", "devicePrefix": False}
    # user credentials
    assert await outcome("d1", UserCredential("shared", "shared-pw")) is AuthOutcome.PASS
    assert await outcome("d1", UserCredential("uniq", "user-pw")) is AuthOutcome.PASS
    assert await outcome("d1", UserCredential("d1", "plain-string")) is AuthOutcome.PASS  # pass entry, own name
    assert await outcome("d1", UserCredential("other", "plain-string")) is AuthOutcome.FAIL
    assert await outcome("d1", UserCredential("shared", "nope")) is AuthOutcome.FAIL
    # unknown app / device, disabled, deleting
    assert await outcome("d1", PassCredential("plain-string"), f"nope-{unique}") is AuthOutcome.FAIL
    assert await outcome("ghost", PassCredential("x")) is AuthOutcome.FAIL
    assert await outcome("off", PassCredential("off-pw")) is AuthOutcome.DISABLED
    assert await outcome("off", PassCredential("wrong")) is AuthOutcome.FAIL
    assert await outcome("going", PassCredential("going-pw")) is AuthOutcome.FAIL


async def test_disabled_app(api: Api, unique: str) -> None:
    app = await _setup(api, unique)
    body = (await api.alice.get(f"{BASE}/apps/{app}")).json()
    body["spec"] = {"core": {"disabled": True}}
    assert (await api.alice.put(f"{BASE}/apps/{app}", json=body)).status_code == 204
    result = await api.host.authenticator.authenticate(app, "d1", PassCredential("plain-string"))
    assert result.outcome is AuthOutcome.DISABLED
    assert result.identity is not None and result.identity.device == "d1"


async def test_authorize_as(api: Api, unique: str) -> None:
    app = await _setup(api, unique)
    authn = api.host.authenticator
    gw = await authn.authenticate(app, "gw", PassCredential("gw-pw"))
    assert gw.ok and gw.identity is not None
    behind = await authn.authorize_as(gw.identity, "behind")
    assert behind.ok and behind.identity is not None and behind.identity.device == "behind"
    assert (await authn.authorize_as(gw.identity, "d1")).outcome is AuthOutcome.FAIL
    assert (await authn.authorize_as(gw.identity, "ghost")).outcome is AuthOutcome.FAIL
    stranger = DeviceIdentity(app=app, app_uid="", device="d1", device_uid="")
    assert (await authn.authorize_as(stranger, "behind")).outcome is AuthOutcome.FAIL


async def test_cache_and_invalidation_in_process(api: Api, unique: str) -> None:
    app = await _setup(api, unique)
    authn = api.host.authenticator
    before = authn.cache.hits
    assert (await authn.authenticate(app, "d1", PassCredential("bcrypt-pw"))).ok
    assert (await authn.authenticate(app, "d1", PassCredential("bcrypt-pw"))).ok
    assert authn.cache.hits == before + 1
    device = (await api.alice.get(f"{BASE}/apps/{app}/devices/d1")).json()
    device["spec"]["credentials"] = {"credentials": [{"pass": "new-pw"}]}
    assert (await api.alice.put(f"{BASE}/apps/{app}/devices/d1", json=device)).status_code == 204
    assert (await authn.authenticate(app, "d1", PassCredential("bcrypt-pw"))).outcome is AuthOutcome.FAIL
    assert (await authn.authenticate(app, "d1", PassCredential("new-pw"))).ok
    # a new device taking a name that resolved by alias: the alias-keyed entry must not survive it
    assert (await authn.authenticate(app, "alias-1", PassCredential("new-pw"))).ok
    r = await api.alice.post(f"{BASE}/apps/{app}/devices", json={"metadata": {"name": "alias-1"}, "spec": {
        "credentials": {"credentials": [{"pass": "its-own"}]}}})
    assert r.status_code == 201, r.text
    assert (await authn.authenticate(app, "alias-1", PassCredential("new-pw"))).outcome is AuthOutcome.FAIL
    now_named = await authn.authenticate(app, "alias-1", PassCredential("its-own"))
    assert now_named.ok and now_named.identity is not None and now_named.identity.device == "alias-1"
    # disabling the app drops the app's entries too
    body = (await api.alice.get(f"{BASE}/apps/{app}")).json()
    body["spec"] = {"core": {"disabled": True}}
    assert (await api.alice.put(f"{BASE}/apps/{app}", json=body)).status_code == 204
    assert (await authn.authenticate(app, "d1", PassCredential("new-pw"))).outcome is AuthOutcome.DISABLED


async def test_cache_invalidation_from_the_registry_topic(api: Api, unique: str, bootstrap: str) -> None:
    """An endpoint's own authenticator learns of the password change through the registry topic."""
    app = await _setup(api, unique)
    endpoint_authn = RegistryAuthenticator(api.host.engine, cache_size=100, cache_ttl_s=600)
    consumer = kafka_consumer(KafkaSettings(bootstrap_servers=bootstrap), REGISTRY, auto_offset_reset="latest")
    await consumer.start()
    follower = asyncio.get_running_loop().create_task(follow_changes(consumer, endpoint_authn))
    try:
        await eventually(lambda: consumer.assignment(), 10.0, "the registry consumer to be assigned")
        assert (await endpoint_authn.authenticate(app, "d1", PassCredential("plain-obj"))).ok
        hits = endpoint_authn.cache.hits
        assert (await endpoint_authn.authenticate(app, "d1", PassCredential("plain-obj"))).ok
        assert endpoint_authn.cache.hits == hits + 1
        device = (await api.alice.get(f"{BASE}/apps/{app}/devices/d1")).json()
        device["spec"]["credentials"] = {"credentials": [{"pass": "rotated"}]}
        assert (await api.alice.put(f"{BASE}/apps/{app}/devices/d1", json=device)).status_code == 204

        async def old_refused() -> bool:
            result = await endpoint_authn.authenticate(app, "d1", PassCredential("plain-obj"))
            return result.outcome is AuthOutcome.FAIL

        await eventually(old_refused, 15.0, "the old password to be refused after the change")
        assert (await endpoint_authn.authenticate(app, "d1", PassCredential("rotated"))).ok
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await consumer.stop()


async def test_client_certificates(api: Api, unique: str) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("device.example")
    anchor = base64.b64encode(ca.cert_pem.bytes()).decode()
    app = await _setup(api, unique, {"trustAnchors": {"anchors": [{"certificate": anchor}]}})
    leaf_cert = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes())
    subject = certs.dn_string(leaf_cert.subject)
    issuer = certs.dn_string(leaf_cert.issuer)
    r = await api.alice.post(f"{BASE}/apps/{app}/devices",
                             json={"metadata": {"name": "certdev"}, "spec": {"alias": [subject]}})
    assert r.status_code == 201, r.text
    chain = tuple(x509.load_pem_x509_certificate(p.bytes()).public_bytes(Encoding.DER)
                  for p in leaf.cert_chain_pems)
    status = (await api.alice.get(f"{BASE}/apps/{app}")).json()["status"]["trustAnchors"]
    assert status["anchors"][0]["valid"]["subject"] == issuer
    assert status["anchors"][0]["valid"]["certificate"] == anchor
    authn = RegistryAuthenticator(api.host.engine, cache_size=0)
    by_name = await authn.authenticate(app, "certdev", CertCredential(chain))
    assert by_name.ok
    by_dn = await authn.authenticate(issuer, subject, CertCredential(chain))  # app by trust-anchor subject
    assert by_dn.ok and by_dn.identity is not None and by_dn.identity.device == "certdev"
    other = trustme.CA().issue_cert("device.example")
    foreign = tuple(x509.load_pem_x509_certificate(p.bytes()).public_bytes(Encoding.DER)
                    for p in other.cert_chain_pems)
    assert (await authn.authenticate(app, "certdev", CertCredential(foreign))).outcome is AuthOutcome.FAIL
    assert (await authn.authenticate(app, "certdev", CertCredential((b"junk",)))).outcome is AuthOutcome.FAIL


async def test_http_auth_service(api: Api, unique: str) -> None:
    app = await _setup(api, unique)
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "alias-1",
                                                  "credential": {"pass": "plain-string"}})
    assert r.status_code == 200, r.text
    passed = r.json()["outcome"]["pass"]
    assert passed["application"]["metadata"]["name"] == app
    assert passed["device"]["metadata"]["name"] == "d1"
    assert "credentials" not in passed["device"].get("spec", {})  # stripped
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "d1",
                                                  "credential": {"user": {"username": "shared",
                                                                          "password": "shared-pw"}}})
    assert "pass" in r.json()["outcome"]
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "d1",
                                                  "credential": {"pass": "wrong"}})
    assert r.json() == {"outcome": "fail"}
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "off",
                                                  "credential": {"pass": "off-pw"}})
    assert "disabled" in r.json()["outcome"]
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "gw", "as": "behind",
                                                  "credential": {"pass": "gw-pw"}})
    assert r.json()["outcome"]["pass"]["as"]["metadata"]["name"] == "behind"
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "gw", "as": "d1",
                                                  "credential": {"pass": "gw-pw"}})
    assert r.json() == {"outcome": "fail"}
    r = await api.admin.post("/api/v1/authorize_as", json={"application": app, "device": "gw", "as": "behind"})
    assert r.json()["outcome"]["pass"]["as"]["metadata"]["name"] == "behind"
    r = await api.admin.post("/api/v1/authorize_as", json={"application": app, "device": "d1", "as": "behind"})
    assert r.json() == {"outcome": "fail"}
    r = await api.admin.post("/api/v1/auth", json={"application": app, "device": "d1", "credential": {"psk": 1}})
    assert r.status_code == 400 and r.json()["error"] == "BadRequest"


async def test_database_down_fails_closed() -> None:
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/none")
    authn = RegistryAuthenticator(engine)
    try:
        with pytest.raises(AuthUnavailable):
            await authn.authenticate("app", "dev", PassCredential("x"))
        with pytest.raises(AuthUnavailable):
            await authn.authorize_as(DeviceIdentity(app="app", app_uid="", device="gw", device_uid=""), "d")
        app = FastAPI()
        errors.install(app)
        device_auth.install(app, authn, anonymous=True)  # no access layer here: open mode
        app.include_router(device_auth.router)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client:
            r = await client.post("/api/v1/auth", json={"application": "a", "device": "d",
                                                        "credential": {"pass": "x"}})
            assert r.status_code == 503 and r.json()["error"] == "ServiceUnavailable"
    finally:
        await engine.dispose()
