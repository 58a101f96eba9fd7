"""`kedge config show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kedge.output import Output, print_json, print_table
from kedge.settings import Settings

app = typer.Typer(help="Inspect the effective settings (env prefix KEDGE_, nesting with __).", no_args_is_help=True)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, f"{name}__"))
        else:
            rows.append((name, value))
    return rows


@app.command("show")
def show(output: Annotated[Output, typer.Option("-o", "--output", help="table or json")] = Output.table) -> None:
    """Print the effective settings with secrets redacted.

    Example: KEDGE_KAFKA__BOOTSTRAP_SERVERS=kafka:9092 kedge config show -o json
    """
    data = Settings.load().redacted()
    if output is Output.json:
        print_json(data)
    else:
        print_table(["SETTING (KEDGE_…)", "VALUE"], [(k.upper(), v) for k, v in _flatten(data)])
