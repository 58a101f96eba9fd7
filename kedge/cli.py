"""The ``kedge`` command line.

Process commands (run the data plane): ``up``, ``broker``, ``worker``, ``topology``; inspection: ``config``.
Management commands (drg-style, against the API host of a context; ``kedge/commands/manage*.py``): ``login``,
``whoami``, ``context``, ``create|get|edit|delete|label|set``, ``cmd``, ``stream``.
Every failure the operator can fix prints one line on stderr and exits 1 (usage errors exit 2).
"""

from __future__ import annotations

import asyncio
import errno
import sys
from pathlib import Path
from typing import Annotated

import typer

from kedge.commands import bench as bench_cmd
from kedge.commands import broker as broker_cmd
from kedge.commands import config as config_cmd
from kedge.commands import manage as manage_cmd
from kedge.commands import serve as serve_cmd
from kedge.commands import topology as topology_cmd
from kedge.commands import worker as worker_cmd
from kedge.errors import KedgeError
from kedge.output import error

app = typer.Typer(
    name="kedge",
    help="Kedge: an IoT device data plane (Drogue Cloud 0.10 compatible). Settings come from KEDGE_* "
    "environment variables; see `kedge config show`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
PROCESSES = "Processes"
app.add_typer(config_cmd.app, name="config")
app.add_typer(topology_cmd.app, name="topology", rich_help_panel=PROCESSES)
app.add_typer(serve_cmd.app, name="serve", rich_help_panel=PROCESSES)
app.add_typer(bench_cmd.app, name="bench", rich_help_panel=PROCESSES)
app.command("broker", rich_help_panel=PROCESSES)(broker_cmd.broker)
app.command("worker", rich_help_panel=PROCESSES)(worker_cmd.worker)
manage_cmd.register(app, panel="Management")  # login, context, create/get/edit/delete/label/set, cmd, stream


@app.command("up", rich_help_panel=PROCESSES)
def up(
    only: Annotated[list[str] | None, typer.Argument(help="run only these Procfile entries (plus the broker)")]
    = None,
    procfile: Annotated[Path, typer.Option(help="the Procfile to run")] = Path("Procfile"),
    embedded_broker: Annotated[bool, typer.Option(
        "--embedded-broker/--external-kafka",
        help="start the in-memory Tansu broker, or use KEDGE_KAFKA__BOOTSTRAP_SERVERS")] = True,
) -> None:
    """Run the whole stack from the Procfile (broker, topology, worker, endpoints, integrations).

    Example: kedge up            # everything, embedded broker, data under ./.kedge
    Example: KEDGE_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 kedge up --external-kafka
    """
    from kedge.launcher import up as run_up
    from kedge.settings import Settings

    raise typer.Exit(asyncio.run(run_up(Settings.load(), procfile, only=only, embedded_broker=embedded_broker)))


def main() -> None:
    """Console-script entry point: operator errors become one line and exit code 1."""
    from pydantic import ValidationError

    try:
        app()
    except KedgeError as exc:
        error(str(exc))
        sys.exit(exc.exit_code)
    except ValidationError as exc:
        error("invalid settings: " + "; ".join(
            f"KEDGE_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        reason = exc.strerror or str(exc)
        error(reason if reason.startswith("cannot listen") else f"cannot listen: {reason}")
        sys.exit(1)
    except Exception as exc:
        from aiokafka.errors import KafkaConnectionError

        if not isinstance(exc, KafkaConnectionError):
            raise
        error(f"cannot reach Kafka: {exc} (KEDGE_KAFKA__BOOTSTRAP_SERVERS)")
        sys.exit(1)
