"""A real `kedge serve api` (SQLite in a temp data dir, a free port, the session's Tansu broker) shared by the
CLI tests (they use unique app names), and a CLI runner with a fresh config dir per test."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kedge.broker import EmbeddedBroker, free_port
from tests.cli.support import Cli
from tests.registry.conftest import ensure_registry_topic
from tests.support.procs import ProcGroup, kedge


@dataclass
class ApiProc:
    url: str
    data_dir: Path
    bootstrap: str
    group: ProcGroup

    @property
    def admin_password(self) -> str:
        return str(json.loads((self.data_dir / "admin-credentials.json").read_text())["password"])


@pytest.fixture(scope="session")
async def api_proc(tmp_path_factory: pytest.TempPathFactory, kafka_broker: EmbeddedBroker,
                   request: pytest.FixtureRequest) -> AsyncIterator[ApiProc]:
    await ensure_registry_topic(kafka_broker.bootstrap)
    tmp = tmp_path_factory.mktemp("cli-api")
    group = ProcGroup(tmp)
    port = free_port()
    data_dir = tmp / "data"
    proc = group.start("api", kedge("serve", "api"), env={
        "KEDGE_DATA_DIR": str(data_dir),
        "KEDGE_API__PORT": str(port),
        "KEDGE_KAFKA__BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
    })
    failed_before = request.session.testsfailed
    try:
        await proc.wait_for_log("API host ready on", 60.0)
        yield ApiProc(f"http://127.0.0.1:{port}", data_dir, kafka_broker.bootstrap, group)
    finally:
        group.stop_all()
        if request.session.testsfailed > failed_before:
            print(group.logs())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "xdg")


@pytest.fixture
async def admin_cli(cli: Cli, api_proc: ApiProc) -> Cli:
    """A CLI logged in to the API host as the local admin."""
    (await cli("login", api_proc.url, "-u", "admin", "-p", api_proc.admin_password)).ok()
    return cli
