"""Printing for the CLI: human tables by default, JSON for scripts."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


class Output(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
    table = Table(title=title, show_edge=False, header_style="bold")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)


def error(message: str) -> None:
    """One line on stderr, prefixed so it is easy to grep."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


class ReadOutput(StrEnum):
    """Formats of the management reads (`kedge get ...`): a table, a wider table, JSON or YAML."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


def print_yaml(data: Any) -> None:
    import yaml

    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    sys.stdout.flush()


def print_outcome(ok: bool, message: str, http_status: int | None = None) -> None:
    """drg's outcome object for operations with ``-o json``: ``{"status","message","http_status"}``."""
    outcome: dict[str, Any] = {"status": "success" if ok else "failure", "message": message}
    if http_status is not None:
        outcome["http_status"] = http_status
    sys.stdout.write(orjson.dumps(outcome).decode() + "\n")
    sys.stdout.flush()


def print_columns(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """kubectl-style plain columns (``NAME   AGE``), never truncated or wrapped, whatever the terminal."""
    cells = [[str(h) for h in headers], *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        sys.stdout.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    sys.stdout.flush()
