"""`kedge get|create|delete member(s)` (app members, §9) and `kedge get|create|delete token(s)` (access tokens)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kedge.commands import manage_registry  # noqa: F401  (registered first: apps and devices lead the help)
from kedge.commands.manage_common import (
    ADMIN,
    TOKENS,
    AppOpt,
    ContextOpt,
    OutputOpt,
    alias,
    app_of,
    create,
    delete,
    done,
    get,
    operation,
    q,
    session,
    show,
)
from kedge.errors import KedgeError
from kedge.output import ReadOutput

if TYPE_CHECKING:
    from kedge.client.api import Session


class Role(StrEnum):
    admin = "admin"
    manager = "manager"
    reader = "reader"


UserArg = Annotated[str, typer.Argument(help="a user id, or the name of a local user")]


def _members_path(app: str) -> str:
    return f"{ADMIN}/apps/{q(app)}/members"


def _user_id(sess: Session, user: str) -> str:
    """A local user's id by name (needs global admin to look up); otherwise ``user`` is taken as the id."""
    from kedge.client.api import ApiError

    try:
        found = sess.get_json(f"{ADMIN}/users/{q(user)}")
    except ApiError as exc:
        if exc.status in (403, 404):
            return user
        raise
    return str(found.get("id") or user)


def _change_members(sess: Session, app: str, change: Any, tries: int = 3) -> None:
    from kedge.client.api import ApiError

    for attempt in range(tries):
        current = sess.get_json(_members_path(app))
        members = dict(current.get("members") or {})
        change(members)
        body = {"resourceVersion": current.get("resourceVersion"), "members": members}
        try:
            sess.request("PUT", _members_path(app), json=body)
            return
        except ApiError as exc:
            if exc.status != 409 or attempt == tries - 1:
                raise


@alias(get, ["members", "member"])
def get_members(app: AppOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """List the members of an application and their roles (needs Admin on the app).

    Example: kedge get members -a my-app
    Example: kedge get members -a my-app -o json
    """
    with operation(output), session(context) as sess:
        data = sess.get_json(_members_path(app_of(sess, app)))
        names = _user_names(sess) if output in (ReadOutput.table, ReadOutput.wide) else {}
        rows = [[user, names.get(user, ""), entry.get("role", "")]
                for user, entry in sorted((data.get("members") or {}).items())]
        show(output, data, ["USER", "NAME", "ROLE"], rows)


def _user_names(sess: Session) -> dict[str, str]:
    """Local user ids -> names, if the caller may list users (global admin); else nothing."""
    from kedge.client.api import ApiError

    try:
        users = sess.get_json(f"{ADMIN}/users")
    except ApiError:
        return {}
    return {str(u.get("id")): str(u.get("username")) for u in users if isinstance(u, dict)}


@alias(create, ["member"])
def create_member(user: UserArg,
                  role: Annotated[Role, typer.Option("--role", "-r", help="admin, manager or reader")],
                  app: AppOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Grant a user a role on an application (replaces the user's current role).

    Example: kedge create member alice --role manager -a my-app
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        user_id = _user_id(sess, user)

        def grant(members: dict[str, Any]) -> None:
            members[user_id] = {"role": role.value}

        _change_members(sess, application, grant)
        done(output, f"{user} is now {role.value} of app {application}", 204)


@alias(delete, ["member"])
def delete_member(user: UserArg, app: AppOpt = None, output: OutputOpt = ReadOutput.table,
                  context: ContextOpt = None) -> None:
    """Remove a user from an application's members.

    Example: kedge delete member alice -a my-app
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        user_id = _user_id(sess, user)

        def revoke(members: dict[str, Any]) -> None:
            if user_id not in members:
                raise KedgeError(f"{user} is not a member of app {application}")
            del members[user_id]

        _change_members(sess, application, revoke)
        done(output, f"{user} removed from app {application}", 204)


@alias(create, ["token"])
def create_token(description: Annotated[str | None, typer.Option("--description", "-d",
                                                                 help="what the token is for")] = None,
                 output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Create an access token (API key) for yourself; the token is shown only this once.

    Use it as `kedge login <url> --token <user>:<token>`, or as HTTP Basic auth `<user>:<token>`.
    Example: kedge create token --description ci
    Example: TOKEN=$(kedge create token -o json | jq -r .token)
    """
    with operation(output), session(context) as sess:
        params = {"description": description} if description is not None else None
        created = sess.request("POST", TOKENS, params=params).json()
        show(output, created, ["PREFIX", "TOKEN"], [[created.get("prefix"), created.get("token")]])


@alias(get, ["tokens", "token"])
def get_tokens(output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """List your access tokens (prefixes only; the tokens themselves are never shown again).

    Example: kedge get tokens -o json
    """
    with operation(output), session(context) as sess:
        tokens = sess.get_json(TOKENS)
        rows = [[t.get("prefix"), t.get("created", ""), t.get("description", "")] for t in tokens]
        show(output, tokens, ["PREFIX", "CREATED", "DESCRIPTION"], rows)


@alias(delete, ["token"])
def delete_token(prefix: Annotated[str, typer.Argument(help="the token's prefix (drg_xxxxxx)")],
                 output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Delete one of your access tokens by its prefix.

    Example: kedge delete token drg_a1B2c3
    """
    with operation(output), session(context) as sess:
        sess.request("DELETE", f"{TOKENS}/{q(prefix)}")
        done(output, f"token {prefix} deleted", 204)
