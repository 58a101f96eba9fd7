"""TLS on every external listener (issue 9): real `kedge serve api|http|ws-integration|mqtt` processes with
certificates from a private CA (trustme), real clients (httpx, websockets, the `kedge` CLI) that trust it or not.

One stack per module: the API host (HTTPS), the HTTP endpoint (HTTPS, optional client certificates), the
WebSocket integration (wss://) and the MQTT endpoint's MQTT-over-wss listener, on the session's broker.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
import websockets
from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography import x509

from kedge.broker import EmbeddedBroker, free_port
from kedge.tls import TlsSettingsError, listener_context, server_context
from protocols.mqtt import Connack, Connect, Decoder, ProtocolVersion, ReasonCode, encode
from registry.access.secrets_dir import read_admin_credentials
from registry.authn.certs import dn_string
from schemas.types import EVENT_TYPE
from tests.agents.support import DEVICE_PARTITIONS, create_topics
from tests.cli.support import Cli
from tests.ingress.kafka_support import create_app_topic
from tests.support.api import listening, password_jwt
from tests.support.procs import Proc, ProcGroup, kedge
from topology.names import app_topic

REGISTRY = "/api/registry/v1alpha1"
PASSWORD = f"dev-pw-{uuid.uuid4().hex}"


@dataclass
class Certs:
    """A private CA with a server certificate for 127.0.0.1, and a second CA for device certificates."""

    dir: Path
    ca: trustme.CA
    device_ca: trustme.CA

    @property
    def ca_pem(self) -> Path:
        return self.dir / "ca.pem"

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts the private CA (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("tls")
    ca, device_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))  # key and chain in one file
    server.cert_chain_pems[0].write_to_path(str(d / "server-cert.pem"))
    server.private_key_pem.write_to_path(str(d / "server-key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    device_ca.cert_pem.write_to_path(str(d / "device-ca.pem"))
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return Certs(d, ca, device_ca)


@dataclass
class TlsStack:
    bootstrap: str
    api_url: str
    http_url: str
    ws_url: str
    wss_mqtt_url: str
    admin: tuple[str, str]
    jwt: str
    #: app whose events the publish test reads back from Kafka; app `stream` feeds the WebSocket tests
    app: str
    stream_app: str
    cert_device: trustme.LeafCert
    procs: list[Proc]


@pytest.fixture(scope="module")
async def tls_stack(kafka_broker: EmbeddedBroker, certs: Certs, tmp_path_factory: pytest.TempPathFactory,
                    request: pytest.FixtureRequest) -> AsyncIterator[TlsStack]:
    tmp = tmp_path_factory.mktemp("tls-stack")
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    env = {"KEDGE_DATA_DIR": str(tmp / "data"), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "KEDGE_INSTANCE": "tls",
           "KEDGE_KAFKA__LINGER_MS": "0", "KEDGE_TOPOLOGY__DEVICE_PARTITIONS": str(DEVICE_PARTITIONS)}
    d = certs.dir
    try:
        api_port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(api_port)), env={
            **env, "KEDGE_API__TLS_CERT": str(d / "server-cert.pem"), "KEDGE_API__TLS_KEY": str(d / "server-key.pem")})
        await api.wait_for_log("API host ready on", 60.0)
        assert f"https://127.0.0.1:{api_port}" in api.log(), api.log()
        api_url = f"https://127.0.0.1:{api_port}"
        admin = read_admin_credentials(tmp / "data")
        assert admin is not None
        suffix = uuid.uuid4().hex[:6]
        app, stream_app = f"tls-{suffix}", f"tls-stream-{suffix}"
        cert_device = certs.device_ca.issue_cert("certdev.example", common_name="certdev")
        subject = dn_string(x509.load_pem_x509_certificate(cert_device.cert_chain_pems[0].bytes()).subject)
        anchor = base64.b64encode(certs.device_ca.cert_pem.bytes()).decode()
        async with httpx.AsyncClient(base_url=api_url, timeout=30, verify=certs.trusting()) as client:
            jwt = await password_jwt(api_url, *admin, verify=certs.trusting())
            client.headers["Authorization"] = f"Bearer {jwt}"
            for name in (app, stream_app):
                spec = {"trustAnchors": {"anchors": [{"certificate": anchor}]}} if name == app else {}
                r = await client.post(f"{REGISTRY}/apps", json={"metadata": {"name": name}, "spec": spec})
                assert r.status_code == 201, r.text
                r = await client.post(f"{REGISTRY}/apps/{name}/devices", json={
                    "metadata": {"name": "dev"}, "spec": {"credentials": {"credentials": [{"pass": PASSWORD}]}}})
                assert r.status_code == 201, r.text
                await create_app_topic(bootstrap, name, partitions=3)
            r = await client.post(f"{REGISTRY}/apps/{app}/devices",
                                  json={"metadata": {"name": "certdev"}, "spec": {"alias": [subject]}})
            assert r.status_code == 201, r.text

        http = group.start("http", kedge("serve", "http", "--port", "0"), env={
            **env, "KEDGE_HTTP__TLS_CERT": str(d / "server.pem"), "KEDGE_HTTP__TLS_KEY": str(d / "server.pem"),
            "KEDGE_HTTP__TLS_CLIENT_CA": str(d / "device-ca.pem")})
        ws = group.start("ws", kedge("serve", "ws-integration", "--port", "0"), env={
            **env, "KEDGE_INTEGRATION__WS_TLS_CERT": str(d / "server.pem"),
            "KEDGE_INTEGRATION__WS_TLS_KEY": str(d / "server.pem")})
        mqtt = group.start("mqtt", kedge("serve", "mqtt", "--port", "0"), env={
            **env, "KEDGE_MQTT__WSS_PORT": "0", "KEDGE_MQTT__TLS_CERT": str(d / "server.pem"),
            "KEDGE_MQTT__TLS_KEY": str(d / "server.pem")})
        await http.wait_for_log("http endpoint listening on https://", 30)
        await ws.wait_for_log("ws integration listening on wss://", 30)
        await mqtt.wait_for_log("wss endpoint listening on wss://", 30)
        yield TlsStack(bootstrap, api_url, listening(http, "https"), listening(ws, "wss"),
                       listening(mqtt, "wss"), admin, jwt, app, stream_app, cert_device, [api, http, ws, mqtt])
        for proc in (api, http, ws, mqtt):
            assert proc.running, f"{proc.name} died:\n{proc.log()[-3000:]}"
            assert "Traceback" not in proc.log(), proc.log()[-5000:]
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


async def _telemetry(bootstrap: str, topic: str, count: int, timeout_s: float = 15.0) -> dict[str, object]:
    """device -> payload of the first ``count`` telemetry events of ``topic`` (registry events skipped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        await consumer.seek_to_beginning()
        got: dict[str, object] = {}
        async with asyncio.timeout(timeout_s):
            while len(got) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for r in records:
                        headers = dict(r.headers)
                        if headers.get("ce_type") == EVENT_TYPE.encode():
                            got[headers["ce_device"].decode()] = orjson.loads(r.value)
        return got
    finally:
        await consumer.stop()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def _publish(stack: TlsStack, ctx: ssl.SSLContext, app: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.http_url, timeout=10, verify=ctx) as client:
        return await client.post("/v1/telemetry", content=body,
                                 headers={**_basic(f"dev@{app}", PASSWORD), "Content-Type": "application/json"})


# ------------------------------------------------------------------------------------------- pure: the context


def test_server_context_is_tls12_or_newer_and_client_ca_makes_client_certificates_optional(certs: Certs) -> None:
    ctx = server_context(certs.dir / "server.pem", certs.dir / "server.pem")
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_NONE
    with_ca = server_context(certs.dir / "server.pem", certs.dir / "server.pem", certs.dir / "device-ca.pem")
    assert with_ca.verify_mode == ssl.CERT_OPTIONAL
    assert listener_context(None, None, setting="KEDGE_X__TLS") is None


@pytest.mark.parametrize(("cert", "key", "ca", "message"), [
    ("server.pem", None, None, "KEDGE_X__TLS_CERT is set but KEDGE_X__TLS_KEY is not"),
    (None, "server.pem", None, "KEDGE_X__TLS_KEY is set but KEDGE_X__TLS_CERT is not"),
    (None, None, "ca.pem", "KEDGE_X__TLS_CLIENT_CA is set but KEDGE_X__TLS_CERT and KEDGE_X__TLS_KEY are not"),
    ("missing.pem", "server.pem", None, "KEDGE_X__TLS_CERT="),
    ("garbage.pem", "garbage.pem", None, "not a PEM certificate chain and its private key"),
    ("server-cert.pem", "ca.pem", None, "not a PEM certificate chain and its private key"),
    ("server.pem", "server.pem", "garbage.pem", "KEDGE_X__TLS_CLIENT_CA="),
])
def test_bad_tls_settings(certs: Certs, cert: str | None, key: str | None, ca: str | None, message: str) -> None:
    def path(name: str | None) -> Path | None:
        return None if name is None else certs.dir / name

    with pytest.raises(TlsSettingsError, match=re.escape(message)) as info:
        listener_context(path(cert), path(key), path(ca), setting="KEDGE_X__TLS")
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------------- real processes


@pytest.mark.integration
@pytest.mark.slow
async def test_https_device_publish_and_client_certificate_land_in_kafka(tls_stack: TlsStack, certs: Certs) -> None:
    ok = await _publish(tls_stack, certs.trusting(), tls_stack.app, b'{"via":"password"}')
    assert ok.status_code == 202, ok.text

    with_cert = certs.trusting()
    tls_stack.cert_device.configure_cert(with_cert)
    async with httpx.AsyncClient(base_url=tls_stack.http_url, timeout=10, verify=with_cert) as client:
        by_cert = await client.post("/v1/telemetry", content=b'{"via":"cert"}',
                                    headers={"Content-Type": "application/json"})
        assert by_cert.status_code == 202, by_cert.text
        # a certificate together with Basic credentials is refused (reference §17 row 14.6)
        both = await client.post("/v1/telemetry", content=b"{}", headers=_basic(f"dev@{tls_stack.app}", PASSWORD))
        assert both.status_code == 403, both.text

    got = await _telemetry(tls_stack.bootstrap, app_topic(tls_stack.app), 2)
    assert got == {"dev": {"via": "password"}, "certdev": {"via": "cert"}}


@pytest.mark.integration
async def test_a_device_certificate_of_another_ca_fails_the_handshake(tls_stack: TlsStack, certs: Certs) -> None:
    foreign = certs.trusting()
    trustme.CA().issue_cert("certdev.example", common_name="certdev").configure_cert(foreign)
    async with httpx.AsyncClient(base_url=tls_stack.http_url, timeout=10, verify=foreign) as client:
        with pytest.raises(httpx.TransportError):
            await client.post("/v1/telemetry", content=b"{}")


@pytest.mark.integration
@pytest.mark.parametrize("listener", ["http", "api"])
async def test_plain_http_and_clients_not_trusting_the_ca_fail(tls_stack: TlsStack, certs: Certs,
                                                                listener: str) -> None:
    url = tls_stack.http_url if listener == "http" else tls_stack.api_url
    async with httpx.AsyncClient(timeout=10) as plain:
        with pytest.raises(httpx.TransportError):  # the listener speaks TLS only
            await plain.get(url.replace("https://", "http://") + "/health")
    other = ssl.create_default_context(cafile=str(certs.dir / "device-ca.pem"))  # a CA, but not the server's
    async with httpx.AsyncClient(timeout=10, verify=other) as untrusting:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await untrusting.get(url + "/health")
    async with httpx.AsyncClient(timeout=10, verify=certs.trusting()) as trusting:
        r = await trusting.get(url + ("/" if listener == "http" else "/ready"))
    assert r.status_code == 200, r.text


@pytest.mark.integration
@pytest.mark.slow
async def test_api_host_over_https_with_the_cli(tls_stack: TlsStack, certs: Certs, tmp_path: Path) -> None:
    cli = Cli(tmp_path / "xdg", env={"SSL_CERT_FILE": str(certs.ca_pem)})
    user, password = tls_stack.admin
    refused = await cli("login", tls_stack.api_url, "-u", user, "-p", password, env={"SSL_CERT_FILE": ""})
    line = refused.fails()
    assert "CERTIFICATE_VERIFY_FAILED" in line and "SSL_CERT_FILE" in line, line
    (await cli("login", tls_stack.api_url, "-u", user, "-p", password, "--ws-url", tls_stack.ws_url,
               "-a", tls_stack.stream_app)).ok()
    apps = (await cli("get", "apps", "-o", "json")).ok().json()
    assert tls_stack.app in {a["metadata"]["name"] for a in apps}

    # `kedge stream` follows the app over wss:// with the same trust
    stream = await cli.spawn("stream", "-n", "1", "-o", "json")
    try:
        for i in range(60):
            assert (await _publish(tls_stack, certs.trusting(), tls_stack.stream_app, b'{"cli":%d}' % i)
                    ).status_code == 202
            try:
                await asyncio.wait_for(asyncio.shield(stream.proc.wait()), 0.5)
                break
            except TimeoutError:
                continue
        result = await stream.result(10)
    finally:
        stream.kill()
    event, = result.ok().lines()
    assert event["application"] == tls_stack.stream_app and "cli" in event["data"], result


@pytest.mark.integration
async def test_ws_integration_over_wss(tls_stack: TlsStack, certs: Certs) -> None:
    url = f"{tls_stack.ws_url}/{tls_stack.stream_app}"
    headers = {"Authorization": f"Bearer {tls_stack.jwt}"}
    with pytest.raises(ssl.SSLCertVerificationError):
        async with websockets.connect(url, additional_headers=headers, open_timeout=10,
                                      ssl=ssl.create_default_context(cafile=str(certs.dir / "device-ca.pem"))):
            pass
    async with websockets.connect(url, additional_headers=headers, ssl=certs.trusting(), open_timeout=10) as ws:
        marker = uuid.uuid4().hex
        event = None
        for _ in range(60):  # the session's consumer joins its group asynchronously: publish until one arrives
            r = await _publish(tls_stack, certs.trusting(), tls_stack.stream_app, orjson.dumps({"m": marker}))
            assert r.status_code == 202, r.text
            try:
                event = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                break
            except TimeoutError:
                continue
    assert event is not None, "no event over wss:// within 60 publishes"
    assert (event["application"], event["device"], event["data"]) == (tls_stack.stream_app, "dev", {"m": marker})


@pytest.mark.integration
async def test_mqtt_over_wss_on_the_device_endpoint(tls_stack: TlsStack, certs: Certs) -> None:
    async with httpx.AsyncClient(timeout=10, verify=certs.trusting()) as client:
        plain = await client.get(tls_stack.wss_mqtt_url.replace("wss://", "https://") + "/mqtt")
    assert (plain.status_code, plain.text) == (404, "MQTT Web Socket protocol only\n")
    connect = Connect("tls-probe", 5, username=f"dev@{tls_stack.app}", password=b"wrong")
    async with websockets.connect(tls_stack.wss_mqtt_url + "/mqtt", subprotocols=["mqtt"],  # type: ignore[list-item]
                                  ssl=certs.trusting(), open_timeout=10) as ws:
        await ws.send(encode(connect, 5))
        data = await asyncio.wait_for(ws.recv(), 10)
    assert isinstance(data, bytes)
    connack, = Decoder(ProtocolVersion(5)).feed(data)
    assert isinstance(connack, Connack)
    assert connack.reason_code == ReasonCode.BAD_USER_NAME_OR_PASSWORD  # the endpoint itself answered, over wss


@pytest.mark.integration
@pytest.mark.parametrize(("service", "settings", "named"), [
    ("http", {"KEDGE_HTTP__TLS_CERT": "server.pem"}, "KEDGE_HTTP__TLS_KEY"),
    ("http", {"KEDGE_HTTP__TLS_CERT": "missing.pem", "KEDGE_HTTP__TLS_KEY": "server.pem"}, "KEDGE_HTTP__TLS_CERT="),
    ("api", {"KEDGE_API__TLS_CERT": "garbage.pem", "KEDGE_API__TLS_KEY": "garbage.pem"}, "KEDGE_API__TLS_CERT="),
    ("ws-integration", {"KEDGE_INTEGRATION__WS_TLS_KEY": "server.pem"}, "KEDGE_INTEGRATION__WS_TLS_CERT"),
    ("mqtt", {"KEDGE_MQTT__WSS_PORT": "0"}, "KEDGE_MQTT__TLS_CERT"),
])
async def test_bad_tls_settings_stop_kedge_serve_with_one_line(certs: Certs, tmp_path: Path, service: str,
                                                               settings: dict[str, str], named: str) -> None:
    env = {k: (v if k.endswith("_PORT") else str(certs.dir / v)) for k, v in settings.items()}
    env["KEDGE_DATA_DIR"] = str(tmp_path / "data")
    result = await Cli(tmp_path / "xdg", env=env)("serve", service, "--port", "0")
    line = result.fails()
    assert named in line, line
