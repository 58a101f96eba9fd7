"""Kafka security settings -> aiokafka options -> Faust credentials (unit level; the real connections are in
test_tls_e2e.py and test_sasl.py)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError

from kedge import kafka
from kedge.commands.worker import faust_config
from kedge.settings import KafkaSettings, Settings
from tests.kafka_security.conftest import Pki
from tests.support.procs import kedge
from topology.faust_app import FaustConfig, broker_credentials, make_app


def sasl(protocol: Any = "SASL_SSL", mechanism: Any = "SCRAM-SHA-256", **extra: Any) -> KafkaSettings:
    return KafkaSettings(security_protocol=protocol, sasl_mechanism=mechanism,
                         sasl_username="alice", sasl_password=SecretStr("pw"), **extra)


@pytest.mark.parametrize(("fields", "message"), [
    ({"security_protocol": "SASL_SSL", "sasl_username": "alice"}, "needs KEDGE_KAFKA__SASL_USERNAME and"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_password": "pw"}, "needs KEDGE_KAFKA__SASL_USERNAME and"),
    ({"sasl_mechanism": "PLAIN", "sasl_username": "a", "sasl_password": "b"},
     "KEDGE_KAFKA__SASL_* is set but KEDGE_KAFKA__SECURITY_PROTOCOL=PLAINTEXT"),
    ({"ssl_cafile": "/ca.pem"}, "KEDGE_KAFKA__SSL_* is set but KEDGE_KAFKA__SECURITY_PROTOCOL=PLAINTEXT"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "a", "sasl_password": "b", "ssl_cafile": "/ca.pem"},
     "KEDGE_KAFKA__SSL_* is set but KEDGE_KAFKA__SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"security_protocol": "SSL", "ssl_keyfile": "/key.pem"}, "KEDGE_KAFKA__SSL_KEYFILE is set but"),
    ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "a", "sasl_password": "b"},
     "Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
])
def test_incomplete_or_ignored_security_settings_are_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("*", r"\*")):
        KafkaSettings(**fields)


def test_invalid_settings_are_one_line_from_the_cli(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "KEDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "KEDGE_DATA_DIR": str(tmp_path)}
    done = subprocess.run(kedge("topology", "show"), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: invalid settings: KEDGE_KAFKA: Value error, KEDGE_KAFKA__SECURITY_PROTOCOL=SASL_SSL needs "
        "KEDGE_KAFKA__SASL_USERNAME and KEDGE_KAFKA__SASL_PASSWORD"], done.stderr


def test_security_options_per_protocol(pki: Pki) -> None:
    assert kafka.security_options(KafkaSettings()) == {"security_protocol": "PLAINTEXT"}
    plain = kafka.security_options(sasl("SASL_PLAINTEXT", mechanism=None))
    assert plain == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                     "sasl_plain_username": "alice", "sasl_plain_password": "pw"}
    scram = kafka.security_options(sasl(ssl_cafile=pki.ca, ssl_certfile=pki.client_cert, ssl_keyfile=pki.client_key))
    assert scram["security_protocol"] == "SASL_SSL" and scram["sasl_mechanism"] == "SCRAM-SHA-256"
    context = scram["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert kafka.common_options(KafkaSettings(bootstrap_servers="k1:9093,k2:9093")) == {
        "bootstrap_servers": "k1:9093,k2:9093", "security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize("settings", [
    KafkaSettings(), KafkaSettings(security_protocol="SSL"), sasl("SASL_PLAINTEXT", "PLAIN"),
    sasl("SASL_SSL", "SCRAM-SHA-512"),
], ids=["plaintext", "ssl", "sasl-plaintext-plain", "sasl-ssl-scram-512"])
def test_faust_gets_exactly_the_options_every_other_client_gets(settings: KafkaSettings) -> None:
    options = kafka.security_options(settings)
    mapped = dict(credentials_to_aiokafka_auth(broker_credentials(options)))
    if settings.security_protocol == "SASL_PLAINTEXT":
        assert mapped.pop("ssl_context") is None  # (Faust always passes the key; aiokafka ignores it here)
    assert mapped == options


def test_the_worker_app_is_built_with_the_settings_credentials(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kafka=sasl("SASL_SSL", "SCRAM-SHA-512"))
    config = faust_config(settings)
    assert config.security["sasl_plain_username"] == "alice"
    assert "pw" not in repr(config)
    app = make_app(config)
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_SSL", "SCRAM-SHA-512")
    plain = make_app(FaustConfig(app_id="plain", bootstrap_servers="127.0.0.1:1", data_dir=tmp_path / "p",
                                 partitions=1))
    assert plain.conf.broker_credentials is None


def test_inconsistent_faust_security_options_are_refused() -> None:
    with pytest.raises(ValueError, match="SSL needs an ssl_context"):
        broker_credentials({"security_protocol": "SSL"})
    with pytest.raises(ValueError, match="disagree"):
        broker_credentials({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"})
