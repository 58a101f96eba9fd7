"""Kafka clients built from settings: one place for bootstrap, client id and security options."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from kedge.settings import KafkaSettings


def common_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Options every aiokafka client gets (bootstrap, security)."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl.create_default_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None
        )
    if kafka.sasl_mechanism:
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return options


def admin_client(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(client_id=f"{kafka.client_id}-admin", request_timeout_ms=kafka.request_timeout_ms,
                               **common_options(kafka))


def producer(kafka: KafkaSettings, **overrides: Any) -> AIOKafkaProducer:
    """The process's shared producer: acks, batching and idempotence from settings."""
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
    return AIOKafkaProducer(**options)


def consumer(kafka: KafkaSettings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    options: dict[str, Any] = {"client_id": kafka.client_id, **common_options(kafka)}
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)
