"""`kedge topology apply|show`."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

from kedge.errors import KedgeError
from kedge.output import Output, console, print_json, print_table
from kedge.settings import Settings
from kedge.topics import declared
from topology.apply import TopicState, TopologyMismatch, apply, inspect

app = typer.Typer(help="Kafka topics: declared vs actual; create what is missing.", no_args_is_help=True)

OutputOpt = Annotated[Output, typer.Option("-o", "--output", help="table or json")]


async def run(settings: Settings, *, create: bool) -> list[TopicState]:
    """Inspect or apply the declared topology on the configured cluster."""
    from aiokafka.errors import KafkaError

    from kedge.kafka import admin_client, check_security

    admin = admin_client(settings.kafka)
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its connection errors become the one line below
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        await check_security(settings.kafka)  # an untrusted broker or a refused login says so
        raise KedgeError(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}") from exc
    finally:
        quiet.setLevel(level)
    try:
        return await (apply if create else inspect)(admin, declared(settings))
    except TopologyMismatch as exc:
        raise KedgeError(f"topology mismatch: {exc} (fix the topic or the settings; Kedge never deletes data)") from exc
    finally:
        await admin.close()


def _print(states: list[TopicState], output: Output) -> None:
    if output is Output.json:
        print_json([s.as_dict() for s in states])
        return
    rows = [(s.spec.name, s.status.value, s.spec.partitions, s.actual_partitions, s.spec.replication,
             ",".join(f"{k}={v}" for k, v in s.spec.configs.items()), s.problem or s.spec.description)
            for s in states]
    print_table(["TOPIC", "STATUS", "PARTITIONS", "ACTUAL", "REPLICAS", "CONFIGS", "NOTE"], rows)


@app.command("apply")
def apply_cmd(output: OutputOpt = Output.table) -> None:
    """Create every declared topic that is missing (idempotent); fail if an existing one disagrees.

    Example: kedge topology apply -o json
    """
    states = asyncio.run(run(Settings.load(), create=True))
    _print(states, output)
    if output is not Output.json:
        created = sum(s.status.value == "created" for s in states)
        console.print(f"{created} created, {len(states) - created} already in place", highlight=False)


@app.command("show")
def show_cmd(output: OutputOpt = Output.table) -> None:
    """List declared topics next to what the cluster has (read-only)."""
    _print(asyncio.run(run(Settings.load(), create=False)), output)
