"""Secured Kafka for real: a plain Tansu behind :class:`~tests.kafka_security.proxy.KafkaProxy` (TLS, mutual
TLS, TLS + SASL), with a trustme CA; one broker per flavour for the whole package."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from kedge.broker import free_port, resolve_binary, wait_until_ready
from tests.kafka_security.proxy import KafkaProxy, ProxyThread

#: SASL users of the proxy (carol: only the Faust worker logs in as her)
USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


@dataclass(frozen=True)
class Pki:
    ca: Path
    wrong_ca: Path
    #: server certificate chain and key for 127.0.0.1 (one PEM file)
    server: Path
    #: a client certificate chain and its key signed by ``ca`` (separate files, for KEDGE_KAFKA__SSL_*)
    client_cert: Path
    client_key: Path
    ca_obj: trustme.CA

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server))
        if require_client_cert:
            ctx.load_verify_locations(cafile=str(self.ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


@dataclass
class SecuredKafka:
    """A Tansu reachable only through ``proxy`` (its advertised listener)."""

    proxy: KafkaProxy
    thread: ProxyThread
    proc: subprocess.Popen[bytes]
    direct: str

    @property
    def bootstrap(self) -> str:
        return self.proxy.address


@pytest.fixture(scope="package")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(tmp / "wrong-ca.pem"))
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    client = ca.issue_cert("kedge-client")
    with open(tmp / "client.pem", "wb") as f:
        for blob in client.cert_chain_pems:
            f.write(blob.bytes())
    client.private_key_pem.write_to_path(str(tmp / "client-key.pem"))
    return Pki(tmp / "ca.pem", tmp / "wrong-ca.pem", tmp / "server.pem", tmp / "client.pem",
               tmp / "client-key.pem", ca)


async def _secured(proxy: KafkaProxy, log: Path) -> SecuredKafka:
    port = free_port()
    proxy.upstream = ("127.0.0.1", port)
    thread = ProxyThread(proxy).start()
    argv = [str(resolve_binary()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://{proxy.address}", "--storage-engine", "memory://tansu/"]
    with log.open("ab") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={"PATH": "/usr/bin:/bin", "RUST_LOG": "warn"})
    try:
        await wait_until_ready(f"127.0.0.1:{port}", 15, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        thread.stop()
        raise
    return SecuredKafka(proxy, thread, proc, f"127.0.0.1:{port}")


async def _close(kafka: SecuredKafka) -> None:
    kafka.thread.stop()
    kafka.proc.terminate()
    try:
        kafka.proc.wait(5)
    except subprocess.TimeoutExpired:
        kafka.proc.kill()
        kafka.proc.wait()


@pytest.fixture(scope="package")
async def tls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredKafka]:
    """TLS (server certificate from ``pki.ca``), no client certificate, no SASL."""
    kafka = await _secured(KafkaProxy(("", 0), pki.server_context()), tmp_path_factory.mktemp("tls") / "tansu.log")
    yield kafka
    await _close(kafka)


@pytest.fixture(scope="package")
async def mtls_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredKafka]:
    """TLS that requires a client certificate signed by ``pki.ca``."""
    kafka = await _secured(KafkaProxy(("", 0), pki.server_context(require_client_cert=True)),
                           tmp_path_factory.mktemp("mtls") / "tansu.log")
    yield kafka
    await _close(kafka)


@pytest.fixture(scope="package")
async def sasl_kafka(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredKafka]:
    """TLS + SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with :data:`USERS`."""
    kafka = await _secured(KafkaProxy(("", 0), pki.server_context(), users=dict(USERS)),
                           tmp_path_factory.mktemp("sasl") / "tansu.log")
    yield kafka
    await _close(kafka)


@pytest.fixture(scope="package")
async def sasl_plaintext_kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecuredKafka]:
    """SASL without TLS (SASL_PLAINTEXT) with :data:`USERS`."""
    kafka = await _secured(KafkaProxy(("", 0), None, users=dict(USERS)),
                           tmp_path_factory.mktemp("sasl-plaintext") / "tansu.log")
    yield kafka
    await _close(kafka)
