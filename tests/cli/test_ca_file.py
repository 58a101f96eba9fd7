"""`kedge login --ca-file`: a private CA trusted by one context, for every request (httpx) and `kedge stream`
(websockets), against a real `kedge serve api` over HTTPS and `kedge serve ws-integration` over wss://, with
certificates from trustme. No SSL_CERT_FILE anywhere: the context alone carries the trust."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
import yaml
from aiokafka import AIOKafkaProducer

from kedge.broker import EmbeddedBroker, free_port
from kedge.client.api import ssl_context
from kedge.errors import KedgeError
from registry.access.secrets_dir import read_admin_credentials
from tests.agents.support import create_topics
from tests.cli.support import Cli
from tests.ingress.kafka_support import create_app_topic
from tests.integrations.conftest import device_event, produce
from tests.support.procs import ProcGroup, kedge
from topology.names import app_topic

#: no trust from the environment: only `--ca-file` may make the private CA trusted
NO_ENV_TRUST = {"SSL_CERT_FILE": "", "SSL_CERT_DIR": ""}


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ca-file")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    return d


# ------------------------------------------------------------------------------------------- pure: the context


def test_ssl_context_adds_the_ca_to_the_default_store(ca_dir: Path) -> None:
    default = ssl_context(None)
    with_ca = ssl_context(str(ca_dir / "ca.pem"))
    assert with_ca.verify_mode is ssl.CERT_REQUIRED and with_ca.check_hostname
    assert len(with_ca.get_ca_certs()) == len(default.get_ca_certs()) + 1  # added, not replaced
    with pytest.raises(KedgeError, match="not found"):
        ssl_context(str(ca_dir / "missing.pem"))
    with pytest.raises(KedgeError, match="is not a PEM CA bundle"):
        ssl_context(str(ca_dir / "garbage.pem"))


# ------------------------------------------------------------------------------------------- end to end


@dataclass
class TlsApi:
    api_url: str
    ws_url: str
    admin: tuple[str, str]
    bootstrap: str


@pytest.fixture(scope="module")
async def tls_api(kafka_broker: EmbeddedBroker, ca_dir: Path, tmp_path_factory: pytest.TempPathFactory,
                  request: pytest.FixtureRequest) -> AsyncIterator[TlsApi]:
    tmp = tmp_path_factory.mktemp("ca-file-stack")
    bootstrap = kafka_broker.bootstrap
    await create_topics(bootstrap)
    group = ProcGroup(tmp)
    failed_before = request.session.testsfailed
    pem = str(ca_dir / "server.pem")
    env = {"KEDGE_DATA_DIR": str(tmp / "data"), "KEDGE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
           "KEDGE_INSTANCE": "ca-file", "KEDGE_KAFKA__LINGER_MS": "0"}
    try:
        port = free_port()
        api = group.start("api", kedge("serve", "api", "--port", str(port)), env={
            **env, "KEDGE_API__TLS_CERT": pem, "KEDGE_API__TLS_KEY": pem})
        ws = group.start("ws", kedge("serve", "ws-integration", "--port", "0"), env={
            **env, "KEDGE_INTEGRATION__WS_TLS_CERT": pem, "KEDGE_INTEGRATION__WS_TLS_KEY": pem})
        await api.wait_for_log("API host ready on", 60.0)
        await ws.wait_for_log("ws integration listening on wss://", 30.0)
        match = re.search(r"listening on (wss://127\.0\.0\.1:\d+)", ws.log())
        assert match, ws.log()
        admin = read_admin_credentials(tmp / "data")
        assert admin is not None
        yield TlsApi(f"https://127.0.0.1:{port}", match.group(1), admin, bootstrap)
        for proc in (api, ws):
            assert proc.running, proc.log()[-3000:]
            assert "Traceback" not in proc.log(), proc.log()[-5000:]
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


@pytest.mark.integration
@pytest.mark.slow
async def test_login_with_ca_file_trusts_the_private_ca_for_the_context(
        tls_api: TlsApi, ca_dir: Path, tmp_path: Path, unique: str) -> None:
    cli = Cli(tmp_path / "xdg", env=NO_ENV_TRUST)
    user, password = tls_api.admin
    # without the CA: refused, and the error says how to trust one
    line = (await cli("login", tls_api.api_url, "-u", user, "-p", password)).fails()
    assert "CERTIFICATE_VERIFY_FAILED" in line and "--ca-file" in line, line
    # bad CA files: one line, nothing saved
    missing = (await cli("login", tls_api.api_url, "-u", user, "-p", password,
                         "--ca-file", str(ca_dir / "missing.pem"))).fails()
    assert "not found" in missing, missing
    garbage = (await cli("login", tls_api.api_url, "-u", user, "-p", password,
                         "--ca-file", str(ca_dir / "garbage.pem"))).fails()
    assert "is not a PEM CA bundle" in garbage, garbage
    assert not cli.config_file.exists()

    app = f"ca-{unique}"
    (await cli("login", tls_api.api_url, "-u", user, "-p", password, "--ca-file", str(ca_dir / "ca.pem"),
               "--ws-url", tls_api.ws_url, "-a", app)).ok()
    shown = yaml.safe_load((await cli("context", "show")).ok().out)
    assert shown["ca_file"] == str((ca_dir / "ca.pem").resolve())
    (await cli("create", "app", app)).ok()
    await create_app_topic(tls_api.bootstrap, app, partitions=3)
    assert app in {a["metadata"]["name"] for a in (await cli("get", "apps", "-o", "json")).ok().json()}
    # a JWT renewal goes through the same trust
    config = yaml.safe_load(cli.config_file.read_text())
    old = config["contexts"][0]["auth"]["token"]
    config["contexts"][0]["auth"]["exp"] = int(time.time()) + 2
    cli.config_file.write_text(yaml.safe_dump(config))
    assert (await cli("whoami", "-o", "json")).ok().json()["name"] == user
    assert yaml.safe_load(cli.config_file.read_text())["contexts"][0]["auth"]["token"] != old

    # `kedge stream` over wss:// with the context's CA
    stream = await cli.spawn("stream", "-n", "1", "-o", "json")
    try:
        async with _producer(tls_api.bootstrap) as producer:
            for _ in range(60):
                await produce(producer, app_topic(app), device_event(app, payload=b'{"ca":1}'))
                try:
                    await asyncio.wait_for(asyncio.shield(stream.proc.wait()), 0.5)
                    break
                except TimeoutError:
                    continue
        result = await stream.result(10)
    finally:
        stream.kill()
    event, = result.ok().lines()
    assert event["application"] == app and event["data"] == {"ca": 1}, result

    # the trust belongs to that context: another one without --ca-file is refused
    other = (await cli("login", tls_api.api_url, "-u", user, "-p", password, "-c", "other")).fails()
    assert "CERTIFICATE_VERIFY_FAILED" in other, other
    async with httpx.AsyncClient(verify=ssl_context(str(ca_dir / "ca.pem"))) as client:  # the same, in-process
        assert (await client.get(tls_api.api_url + "/health")).json() == {"status": "ok"}


@asynccontextmanager
async def _producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
