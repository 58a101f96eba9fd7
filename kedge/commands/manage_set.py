"""`kedge set password|gateway|alias`: read-modify-write of one device spec section (drg's tree, §11)."""

from __future__ import annotations

from typing import Annotated

import typer

from kedge.commands.manage_common import (
    AppOpt,
    ContextOpt,
    OutputOpt,
    app_of,
    device_path,
    done,
    operation,
    session,
    set_,
)
from kedge.commands.manage_registry import update_resource
from kedge.output import ReadOutput


@set_.command("password")
def set_password(device: Annotated[str, typer.Argument(help="the device")],
                 password: Annotated[str, typer.Argument(help="the new password")],
                 username: Annotated[str | None, typer.Option("--username", "-u",
                                                              help="a user credential with this username")] = None,
                 app: AppOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Set a device's password (replaces its password credential, or the one of that username).

    Example: kedge set password dev1 s3cret -a my-app
    Example: kedge set password dev1 s3cret -u sensor-user -a my-app
    """
    from kedge.client.edits import set_password as change

    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        path = device_path(application, device)
        update_resource(sess, path, "device", device, lambda r: change(r, password, username))
        done(output, f"password of device {device} set", 204)


@set_.command("gateway")
def set_gateway(device: Annotated[str, typer.Argument(help="the device")],
                gateway: Annotated[str, typer.Argument(help="a device allowed to act for it")],
                app: AppOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Allow GATEWAY to publish for DEVICE (adds to spec.gatewaySelector.matchNames).

    Example: kedge set gateway sensor1 gw1 -a my-app
    """
    from kedge.client.edits import add_gateway

    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        update_resource(sess, device_path(application, device), "device", device, lambda r: add_gateway(r, gateway))
        done(output, f"gateway {gateway} set for device {device}", 204)


@set_.command("alias")
def set_alias(device: Annotated[str, typer.Argument(help="the device")],
              name: Annotated[str, typer.Argument(help="another name the device is known by")],
              app: AppOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Add an alias to a device (spec.alias).

    Example: kedge set alias dev1 00:11:22:33:44:55 -a my-app
    """
    from kedge.client.edits import add_alias

    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        update_resource(sess, device_path(application, device), "device", device, lambda r: add_alias(r, name))
        done(output, f"alias {name} added to device {device}", 204)
