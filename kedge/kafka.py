"""Kafka clients built from settings: one place for bootstrap, client id and security options.

Every aiokafka client of Kedge gets :func:`common_options` (or :func:`security_options` next to its own
bootstrap), and the Faust worker gets the same :func:`security_options` as its broker credentials, so TLS,
mutual TLS and SASL (PLAIN, SCRAM-SHA-256/512) settings apply to every connection of every process.

:func:`check_security` fails fast, with one line naming the setting, on what retrying cannot fix (an untrusted
broker certificate, refused SASL credentials); an unreachable broker is not its business.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from kedge.errors import KedgeError
from kedge.settings import KafkaSettings

#: how long :func:`check_security` waits for one broker's TLS handshake and SASL exchange
SECURITY_CHECK_TIMEOUT_S = 10.0


class KafkaSecurityError(KedgeError):
    """TLS or SASL to Kafka cannot work with these settings (unreadable files, untrusted broker, bad login)."""


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The client TLS context for SSL / SASL_SSL (None otherwise): CA file, optional client certificate."""
    if kafka.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    try:
        context = ssl.create_default_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise KafkaSecurityError(f"KEDGE_KAFKA__SSL_CAFILE={kafka.ssl_cafile}: not a readable PEM CA bundle "
                                 f"({_reason(exc)})") from None
    if kafka.ssl_certfile:
        try:
            context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None)
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSecurityError(
                f"KEDGE_KAFKA__SSL_CERTFILE={kafka.ssl_certfile} / KEDGE_KAFKA__SSL_KEYFILE={kafka.ssl_keyfile}: "
                f"not a readable PEM certificate chain and its private key ({_reason(exc)})") from None
    return context


def security_options(kafka: KafkaSettings) -> dict[str, Any]:
    """The aiokafka security options (``security_protocol``, ``ssl_context``, ``sasl_*``) of these settings."""
    options: dict[str, Any] = {"security_protocol": kafka.security_protocol}
    context = ssl_context(kafka)
    if context is not None:
        options["ssl_context"] = context
    if kafka.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        options["sasl_mechanism"] = kafka.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return options


def common_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options every aiokafka client gets (bootstrap, security)."""
    return {"bootstrap_servers": kafka.bootstrap_servers, **security_options(kafka)}


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(client_id=f"{kafka.client_id}-admin", request_timeout_ms=kafka.request_timeout_ms,
                               **common_options(kafka))


def producer(kafka: KafkaSettings, *, auto_create_topics: bool = True, **overrides: Any) -> AIOKafkaProducer:
    """The process's shared producer: acks, batching and idempotence from settings.

    ``auto_create_topics=False``: a send to a missing topic fails instead of creating it
    (:func:`forbid_auto_create`); give it to every producer of internal topics."""
    acks: Any = "all" if kafka.acks == "all" else int(kafka.acks)
    options: dict[str, Any] = {
        "client_id": kafka.client_id,
        "acks": acks,
        "linger_ms": kafka.linger_ms,
        "max_batch_size": kafka.max_batch_size,
        "request_timeout_ms": kafka.request_timeout_ms,
        "enable_idempotence": kafka.enable_idempotence,
        **common_options(kafka),
    }
    options.update(overrides)
    made = AIOKafkaProducer(**options)
    if not auto_create_topics:
        forbid_auto_create(made.client)
    return made


def consumer(kafka: KafkaSettings, *topics: str, auto_create_topics: bool = True,
             **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with the client id and security of the settings (``auto_create_topics``: see :func:`producer`)."""
    options: dict[str, Any] = {"client_id": kafka.client_id, **common_options(kafka)}
    options.update(overrides)
    made = AIOKafkaConsumer(*topics, **options)
    if not auto_create_topics:
        forbid_auto_create(made._client)
    return made


# ------------------------------------------------------------------------------------------ topics


def forbid_auto_create(client: AIOKafkaClient) -> AIOKafkaClient:
    """Make ``client``'s metadata requests say ``allow_auto_topic_creation=false``; returns it.

    aiokafka 0.14 asks for a topic's metadata (on the first send to it, or a subscription) with auto-creation
    allowed and has no option against it; a broker with auto-creation on (Tansu always, Kafka by default) then
    makes the topic with its default partition count, which silently breaks co-partitioning. With this a send
    to a missing topic fails (``UnknownTopicOrPartitionError`` after ``request_timeout_ms``) and creates
    nothing. Relies on aiokafka internals (``_get_conn``, the request's flag); tests/ingress pin it.
    """
    get_conn = client._get_conn

    async def get_conn_without_auto_create(*args: Any, **kwargs: Any) -> Any:
        conn = await get_conn(*args, **kwargs)
        if conn is not None and not getattr(conn, "_kedge_no_auto_create", False):
            send = conn.send

            def send_without_auto_create(request: Any, *a: Any, **kw: Any) -> Any:
                if isinstance(request, MetadataRequest):
                    request._allow_auto_topic_creation = False
                return send(request, *a, **kw)

            conn.send = send_without_auto_create
            conn._kedge_no_auto_create = True
        return conn

    client._get_conn = get_conn_without_auto_create
    return client


async def topic_partitions(client: AIOKafkaClient) -> dict[str, int]:
    """Partition count of every topic on the cluster (a metadata request for ALL topics creates none)."""
    cluster = await client.fetch_all_metadata()
    return {topic: len(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}


def topic_problems(actual: Mapping[str, int], expected: Mapping[str, int | None]) -> list[str]:
    """What is wrong with ``expected`` topics (name -> declared partitions, None: any) given ``actual``."""
    missing = [topic for topic in expected if topic not in actual]
    problems = []
    if missing:
        listed = ", ".join(repr(topic) for topic in missing)
        problems.append(f"topic{'s' if len(missing) > 1 else ''} {listed} missing — run `kedge topology apply`")
    for topic, partitions in expected.items():
        if topic in actual and partitions is not None and actual[topic] != partitions:
            problems.append(f"topic {topic!r} has {actual[topic]} partitions, declared {partitions} (auto-created "
                            f"by the broker?) — delete it and run `kedge topology apply`")
    return problems


# ---------------------------------------------------------------------------------------- security


async def check_security(kafka: KafkaSettings, timeout_s: float = SECURITY_CHECK_TIMEOUT_S) -> None:
    """Raise :class:`KafkaSecurityError` if TLS or SASL to the first reachable bootstrap server fails.

    A no-op for PLAINTEXT. Servers that refuse or reset the TCP connection are skipped (a broker that is down
    is a matter for the caller's retries); a broker that does not finish the TLS handshake or the SASL
    exchange within ``timeout_s`` (a plaintext listener, usually) is an error, and so is a connection the
    broker closes during the SASL exchange (how brokers refuse a login they do not answer).
    """
    if kafka.security_protocol == "PLAINTEXT":
        return
    from aiokafka.conn import create_conn

    options = security_options(kafka)
    for host, port in _servers(kafka.bootstrap_servers):
        try:
            async with asyncio.timeout(timeout_s):
                _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
        except (OSError, TimeoutError):
            continue  # unreachable: not a security problem
        where = f"Kafka at {host}:{port}"
        try:
            async with asyncio.timeout(timeout_s):
                conn = await create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options)
            conn.close()
            return
        except ssl.SSLCertVerificationError as exc:
            raise KafkaSecurityError(f"TLS to {where}: broker certificate not trusted ({exc.verify_message}); "
                                     f"check KEDGE_KAFKA__SSL_CAFILE={kafka.ssl_cafile}") from None
        except ssl.SSLError as exc:
            raise KafkaSecurityError(f"TLS to {where} failed ({_reason(exc)}); is it a TLS listener? check "
                                     f"KEDGE_KAFKA__SECURITY_PROTOCOL={kafka.security_protocol}") from None
        except TimeoutError:
            raise KafkaSecurityError(f"{where} did not complete the {kafka.security_protocol} handshake within "
                                     f"{timeout_s:g}s; check KEDGE_KAFKA__SECURITY_PROTOCOL (is it a "
                                     f"{'TLS' if 'SSL' in kafka.security_protocol else 'SASL'} listener?)") \
                from None
        except OSError:
            continue  # reset or refused after all (not TLS: that is an SSLError): unreachable, not insecure
        except (KafkaError, KeyError, ValueError) as exc:
            # (aiokafka's SCRAM client raises KeyError('v') when the server answers with an error instead of its
            # signature: that too is a refused login)
            if "SASL" not in kafka.security_protocol:
                hint = ("does it want a client certificate? (KEDGE_KAFKA__SSL_CERTFILE, _SSL_KEYFILE)"
                        if kafka.ssl_certfile is None else
                        f"is the client certificate KEDGE_KAFKA__SSL_CERTFILE={kafka.ssl_certfile} trusted there?")
                raise KafkaSecurityError(f"TLS to {where} failed: {_reason(exc)}; {hint}") from None
            raise KafkaSecurityError(
                f"SASL {options['sasl_mechanism']} login of {kafka.sasl_username!r} to {where} refused "
                f"({_reason(exc)}); check KEDGE_KAFKA__SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD") from None


def fail_fast_on_security(kafka: KafkaSettings) -> None:
    """:func:`check_security` for a CLI command, before its own event loop starts."""
    if kafka.security_protocol != "PLAINTEXT":
        asyncio.run(check_security(kafka))


def _servers(bootstrap: str) -> list[tuple[str, int]]:
    servers = []
    for entry in bootstrap.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, _, port = entry.rpartition(":")
        servers.append((host.strip("[]") or entry, int(port) if port.isdigit() else 9092))
    return servers


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc) \
        or type(exc).__name__
    return str(reason).replace("\n", " ")
