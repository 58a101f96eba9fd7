"""One frozen settings object from KEDGE_* variables; Faust's own variables never win."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pydantic
import pytest

from kedge.settings import Settings
from tests.support.procs import REPO, kedge
from topology.faust_app import FaustConfig, make_app


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDGE_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("KEDGE_DATA_DIR", "/var/lib/kedge")
    monkeypatch.setenv("KEDGE_INSTANCE", "prod")
    s = Settings.load()
    assert s.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.data_dir == Path("/var/lib/kedge") and s.instance == "prod"


def test_settings_are_frozen_and_refuse_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings.load()
    with pytest.raises(pydantic.ValidationError):
        s.instance = "x"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        s.kafka.bootstrap_servers = "x"  # type: ignore[misc]
    monkeypatch.setenv("KEDGE_KAFKA__BOOTSTRAP_SERVER", "typo:9092")
    with pytest.raises(pydantic.ValidationError, match="bootstrap_server"):
        Settings.load()


def test_config_show_json_redacts_secrets() -> None:
    env = {"PATH": "/usr/bin:/bin", "KEDGE_KAFKA__SASL_PASSWORD": "hunter2",
           "KEDGE_KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "KEDGE_KAFKA__SASL_USERNAME": "kedge",
           "KEDGE_REGISTRY__DATABASE_URL": "postgresql://kedge:s3cret@db/kedge", "KEDGE_INSTANCE": "prod"}
    result = subprocess.run(kedge("config", "show", "-o", "json"), capture_output=True, text=True, env=env,
                            cwd=REPO, timeout=30)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["instance"] == "prod"
    assert data["kafka"]["sasl_password"] == "***" and data["registry"]["database_url"] == "***"
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout


def test_faust_environment_variables_do_not_override_our_settings(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    for name, value in {"BROKER_URL": "kafka://evil:1", "STORE_URL": "memory://", "DATADIR": "/tmp/evil",
                        "WEB_PORT": "1"}.items():
        monkeypatch.setenv(name, value)
    app = make_app(FaustConfig(app_id="guard", bootstrap_servers="127.0.0.1:9999", data_dir=tmp_path,
                               partitions=2))
    assert [str(u) for u in app.conf.broker] == ["kafka://127.0.0.1:9999"]
    assert str(app.conf.store) == "rocksdb:"
    assert Path(app.conf.datadir) == tmp_path
    assert app.conf.web_port == 6066
    for name in ("BROKER_URL", "STORE_URL", "DATADIR", "WEB_PORT"):
        assert name not in Settings.load().environment_for_child()
