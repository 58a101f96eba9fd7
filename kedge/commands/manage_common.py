"""What every management command shares: the option types, the context/session, printing, outcomes.

The management commands talk to the API host (and the WebSocket integration) of a *context* stored by
`kedge login` in ``$XDG_CONFIG_HOME/kedge/config.yaml``; they never read :class:`kedge.settings.Settings`
(those configure the processes). The config file location and ``$EDITOR`` are the only environment they read,
here at the edge.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from kedge.errors import KedgeError
from kedge.output import ReadOutput, console, error, print_columns, print_json, print_outcome, print_yaml

if TYPE_CHECKING:
    from kedge.client.api import Session
    from kedge.client.config import ConfigStore

REGISTRY = "/api/registry/v1alpha1"
ADMIN = "/api/admin/v1alpha1"
TOKENS = "/api/tokens/v1alpha1"
APPS = f"{REGISTRY}/apps"

OutputOpt = Annotated[ReadOutput, typer.Option(
    "--output", "-o", help="table (default), wide, json or yaml", case_sensitive=False)]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", "-c", help="use this context instead of the active one (see `kedge context list`)")]
AppOpt = Annotated[str | None, typer.Option(
    "--app", "-a", "--application", help="the application (default: the context's default-app)")]


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True)


create = _group("Create a resource: app, device, member, token.")
get = _group("Read resources: apps, devices, members, tokens (-o json|yaml for scripts).")
edit = _group("Edit an app or device in $EDITOR (or from -f FILE), with optimistic locking.")
delete = _group("Delete a resource: app, device, member, token.")
label = _group("Set (k=v) or remove (k-) labels of an app or device.")
set_ = _group("Set a device's password, gateway or alias.")


def alias(group: typer.Typer, names: Sequence[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command under its first name, and hidden under the others (drg's aliases)."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        group.command(names[0])(fn)
        for other in names[1:]:
            group.command(other, hidden=True)(fn)
        return fn

    return register


def config_store() -> ConfigStore:
    from kedge.client.config import ConfigStore, config_path

    return ConfigStore(config_path(os.environ))


def editor_command() -> str:
    return os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"


def session(context: str | None) -> Session:
    """A session on the chosen (or active) context; :class:`NoContext` when there is none."""
    from kedge.client.api import Session

    store = config_store()
    config = store.load()
    return Session(store, config, config.get(context))


def app_of(sess: Session, app: str | None) -> str:
    name = app or sess.context.default_app
    if not name:
        raise KedgeError("no application: give -a/--app, or set one with `kedge context default-app <app>`")
    return name


def q(name: str) -> str:
    return quote(name, safe="")


def app_path(app: str) -> str:
    return f"{REGISTRY}/apps/{q(app)}"


def device_path(app: str, device: str | None = None) -> str:
    base = f"{REGISTRY}/apps/{q(app)}/devices"
    return base if device is None else f"{base}/{q(device)}"


@contextmanager
def operation(output: ReadOutput) -> Iterator[None]:
    """Run a command body: a :class:`KedgeError` becomes one line on stderr (and the failure outcome
    object on stdout with ``-o json``) and exit code 1; never a traceback."""
    try:
        yield
    except KedgeError as exc:
        status = getattr(exc, "status", None)
        if output is ReadOutput.json:
            print_outcome(False, getattr(exc, "message", str(exc)), status)
        error(str(exc))
        raise typer.Exit(exc.exit_code) from None


def done(output: ReadOutput, message: str, http_status: int | None = None) -> None:
    """Report a successful operation."""
    if output is ReadOutput.json:
        print_outcome(True, message, http_status)
    elif output is ReadOutput.yaml:
        print_yaml({"status": "success", "message": message, "http_status": http_status})
    else:
        console.print(message, highlight=False, soft_wrap=True)


def show(output: ReadOutput, data: Any, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a read: ``data`` as JSON/YAML, or the table ``headers`` x ``rows``."""
    if output is ReadOutput.json:
        print_json(data)
    elif output is ReadOutput.yaml:
        print_yaml(data)
    else:
        print_columns(headers, rows)
