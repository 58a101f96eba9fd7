"""`kedge login`, `kedge whoami` and `kedge context ...`: where the management commands go, and as whom."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kedge.commands.manage_common import ContextOpt, OutputOpt, config_store, done, operation, session, show
from kedge.errors import KedgeError
from kedge.output import ReadOutput

context_app = typer.Typer(help="Manage contexts (API host, WebSocket URL, credentials, default app).",
                          no_args_is_help=True)
NameArg = Annotated[str, typer.Argument(help="context name")]


def login(
    url: Annotated[str, typer.Argument(help="the API host, e.g. http://127.0.0.1:8011")],
    username: Annotated[str | None, typer.Option("--username", "-u", help="a local user (e.g. admin)")] = None,
    password: Annotated[str | None, typer.Option("--password", "-p", help="its password")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", "--access-token", help="an access token as <user>:<token> (from `kedge create token`)")] = None,
    ws_url: Annotated[str | None, typer.Option(
        "--ws-url", help="the WebSocket integration (default: ws://<api host>:8082)")] = None,
    name: Annotated[str, typer.Option("--context", "-c", help="name of the context to create or replace")]
    = "default",
    default_app: Annotated[str | None, typer.Option("--app", "-a", help="default application")] = None,
    ca_file: Annotated[Path | None, typer.Option(
        "--ca-file", help="trust this CA (PEM) too, for every request of the context (https:// and wss://)")]
    = None,
    jwt_ttl: Annotated[int | None, typer.Option("--jwt-ttl", min=1, hidden=True,
                                                help="ask for JWTs of this lifetime, seconds (tests)")] = None,
    output: OutputOpt = ReadOutput.table,
) -> None:
    """Log in to a Kedge API host and make it the active context.

    With --username/--password, Kedge issues a JWT (POST /api/token) and the CLI renews it before it expires
    (the password is kept for that, in the 0600 config file). With --token, the access token is used as is.
    The admin's first password is in <data dir>/admin-credentials.json. --ca-file trusts a private CA besides
    the default store, for this context only (its path is kept in the context).

    Example: kedge login http://127.0.0.1:8011 -u admin -p "$(jq -r .password .kedge/admin-credentials.json)"
    Example: kedge login https://kedge.example.com --token alice:drg_a1B2c3_... --ws-url wss://ws.example.com
    Example: kedge login https://10.0.0.5:8011 -u admin -p "$PASSWORD" --ca-file ca.pem
    """
    from kedge.client.api import Session, fetch_jwt, ssl_context
    from kedge.client.config import Auth, Context, derive_ws_url

    with operation(output):
        url = url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise KedgeError(f"invalid URL {url!r}: use http://host:port or https://host")
        if token is not None and (username is not None or password is not None):
            raise typer.BadParameter("give either --token or --username/--password")
        ca = str(ca_file.expanduser().resolve()) if ca_file is not None else None
        if ca is not None:
            ssl_context(ca)  # a missing or unparsable file: one line now, not at every later command
        if token is not None:
            user, sep, secret = token.partition(":")
            if not sep or not user or not secret:
                raise KedgeError("--token must be <username>:<access token>")
            auth = Auth(kind="api_key", username=user, token=secret)
        else:
            if username is None or password is None:
                if not sys.stdin.isatty():
                    raise KedgeError("give --username and --password, or --token <user>:<token>")
                username = username or typer.prompt("username", default="admin")
                password = password or typer.prompt("password", hide_input=True)
            assert username is not None and password is not None
            auth = fetch_jwt(url, username, password, ttl_s=jwt_ttl, ca_file=ca)
        ctx = Context(name=name, api_url=url, ws_url=(ws_url or derive_ws_url(url)).rstrip("/"),
                      default_app=default_app, ca_file=ca, auth=auth)
        store = config_store()
        config = store.load()
        with Session(store, config, ctx) as sess:
            who = sess.get_json("/api/user/v1alpha1/whoami")
        if who.get("anonymous"):
            raise KedgeError("the API host did not accept these credentials")
        config.put(ctx)
        config.active = name
        store.save(config)
        done(output, f"logged in to {url} as {who.get('name') or who.get('id')} (context {name})", 200)


def whoami(
    token: Annotated[bool, typer.Option("--token", "-t", help="print only a current bearer token (a JWT, "
                                        "renewed if needed) or the access token, for curl")] = False,
    output: OutputOpt = ReadOutput.table, context: ContextOpt = None,
) -> None:
    """Show who the API host thinks you are, and through which context.

    Example: kedge whoami
    Example: kedge whoami -o json
    Example: curl -H "Authorization: Bearer $(kedge whoami -t)" http://127.0.0.1:8011/api/registry/v1alpha1/apps
    """
    with operation(output), session(context) as sess:
        if token:
            print(sess.fresh_auth().token)
            return
        who = sess.get_json("/api/user/v1alpha1/whoami")
        data = {"context": sess.context.name, "api_url": sess.context.api_url, "ws_url": sess.context.ws_url,
                **who}
        show(output, data, ["CONTEXT", "USER", "ID", "ROLES", "VIA", "API"],
             [[sess.context.name, who.get("name"), who.get("id"), ",".join(who.get("roles") or []),
               who.get("via"), sess.context.api_url]])


@context_app.command("list")
def context_list(output: OutputOpt = ReadOutput.table) -> None:
    """List the contexts; the active one is marked with *.

    Example: kedge context list -o json
    """
    with operation(output):
        config = config_store().load()
        data = [{**c.redacted(), "active": c.name == config.active} for c in config.contexts]
        rows = [["*" if d["active"] else "", c.name, c.api_url, c.ws_url, c.default_app or "", c.auth.username,
                 c.auth.kind] for d, c in zip(data, config.contexts, strict=True)]
        show(output, data, ["", "NAME", "API", "WEBSOCKET", "DEFAULT APP", "USER", "AUTH"], rows)


@context_app.command("show")
def context_show(name: Annotated[str | None, typer.Argument(help="context (default: the active one)")] = None,
                 output: OutputOpt = ReadOutput.yaml) -> None:
    """Show one context (secrets redacted); YAML by default.

    Example: kedge context show
    Example: kedge context show staging -o json
    """
    with operation(output):
        ctx = config_store().load().get(name)
        data = ctx.redacted()
        show(output, data, ["NAME", "API", "WEBSOCKET", "DEFAULT APP", "USER", "AUTH", "EXPIRES"],
             [[ctx.name, ctx.api_url, ctx.ws_url, ctx.default_app or "", ctx.auth.username, ctx.auth.kind,
               ctx.auth.exp or ""]])


@context_app.command("use")
def context_use(name: NameArg, output: OutputOpt = ReadOutput.table) -> None:
    """Make a context the active one.

    Example: kedge context use staging
    """
    with operation(output):
        store = config_store()
        config = store.load()
        config.get(name)
        config.active = name
        store.save(config)
        done(output, f"context {name} is active")


@context_app.command("delete")
def context_delete(name: NameArg, output: OutputOpt = ReadOutput.table) -> None:
    """Delete a context (and the credentials stored with it).

    Example: kedge context delete staging
    """
    with operation(output):
        store = config_store()
        config = store.load()
        config.remove(name)
        store.save(config)
        done(output, f"context {name} deleted")


context_app.command("remove", hidden=True)(context_delete)


@context_app.command("rename")
def context_rename(name: NameArg, new: Annotated[str, typer.Argument(help="the new name")],
                   output: OutputOpt = ReadOutput.table) -> None:
    """Rename a context.

    Example: kedge context rename default local
    """
    with operation(output):
        store = config_store()
        config = store.load()
        ctx = config.get(name)
        if config.find(new) is not None:
            raise KedgeError(f"a context named {new!r} exists already")
        was_active = config.active == name
        config.remove(name)
        config.put(ctx.model_copy(update={"name": new}))
        if was_active:
            config.active = new
        store.save(config)
        done(output, f"context {name} renamed to {new}")


@context_app.command("default-app")
def context_default_app(app: Annotated[str, typer.Argument(help="the application -a defaults to")],
                        context: ContextOpt = None, output: OutputOpt = ReadOutput.table) -> None:
    """Set the application that commands use when -a/--app is not given.

    Example: kedge context default-app my-app
    """
    with operation(output):
        store = config_store()
        config = store.load()
        ctx = config.get(context)
        config.put(ctx.model_copy(update={"default_app": app}))
        store.save(config)
        done(output, f"default app of context {ctx.name} is {app}")


@context_app.command("default-context", hidden=True)
def context_default_context(name: NameArg, output: OutputOpt = ReadOutput.table) -> None:
    """drg's name for `kedge context use`."""
    context_use(name, output)
