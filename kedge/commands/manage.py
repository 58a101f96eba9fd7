"""The management commands (drg's tree, reference §11), registered on the `kedge` app under one help panel."""

from __future__ import annotations

import typer

from kedge.commands import manage_access, manage_registry, manage_set  # noqa: F401  (their commands join the groups)
from kedge.commands import manage_context as ctx
from kedge.commands import manage_stream as strm
from kedge.commands.manage_common import create, delete, edit, get, label, set_

MANAGEMENT = "Management"


def register(app: typer.Typer, panel: str = MANAGEMENT) -> None:
    app.command("login", rich_help_panel=panel)(ctx.login)
    app.command("whoami", rich_help_panel=panel)(ctx.whoami)
    app.add_typer(ctx.context_app, name="context", rich_help_panel=panel)
    app.add_typer(create, name="create", rich_help_panel=panel)
    app.add_typer(get, name="get", rich_help_panel=panel)
    app.add_typer(edit, name="edit", rich_help_panel=panel)
    app.add_typer(delete, name="delete", rich_help_panel=panel)
    app.add_typer(label, name="label", rich_help_panel=panel)
    app.add_typer(set_, name="set", rich_help_panel=panel)
    app.command("cmd", rich_help_panel=panel)(strm.cmd)
    app.command("command", rich_help_panel=panel, hidden=True)(strm.cmd)
    app.command("stream", rich_help_panel=panel)(strm.stream)
