"""`kedge cmd <device> <command>` (command API, reference §7.3) and `kedge stream` (WebSocket integration, §10)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kedge.commands.manage_common import AppOpt, ContextOpt, OutputOpt, app_of, done, operation, q, session
from kedge.errors import KedgeError
from kedge.output import ReadOutput

COMMANDS = "/api/command/v1alpha1"


def cmd(
    device: Annotated[str, typer.Argument(help="the device to send the command to")],
    command: Annotated[str, typer.Argument(help="the command name")],
    app: AppOpt = None,
    payload: Annotated[str | None, typer.Option("--payload", "-p", help="the payload, JSON")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="read the JSON payload from this file")]
    = None,
    wait: Annotated[float | None, typer.Option("--wait", "-w", min=0.001, max=60.0, help=(
        "wait up to this many seconds for the delivery outcome (fails if the device is offline)"))] = None,
    output: OutputOpt = ReadOutput.table,
    context: ContextOpt = None,
) -> None:
    """Send a command to a device (delivered by the endpoint it is connected to).

    Argument order is <device> <command> (Kedge follows drg's code, not its README).
    Example: kedge cmd dev1 set-temp -a my-app -p '{"target": 21}'
    Example: kedge cmd dev1 reboot -a my-app --wait 5
    Example: kedge cmd dev1 config -a my-app -f config.json -o json
    """
    from kedge.client.api import ApiError

    with operation(output), session(context) as sess:
        if payload is not None and file is not None:
            raise typer.BadParameter("give either --payload or --file, not both")
        body: bytes | None = None
        if file is not None:
            try:
                payload = file.read_text()
            except OSError as exc:
                raise KedgeError(f"cannot read {file}: {exc.strerror}") from None
        if payload is not None:
            _check_json(payload, "--file" if file is not None else "--payload")
            body = payload.encode()
        application = app_of(sess, app)
        path = f"{COMMANDS}/apps/{q(application)}/devices/{q(device)}"
        headers = {"Content-Type": "application/json"} if body is not None else {}
        params: dict[str, str] = {"command": command}
        if wait is not None:
            params["wait"] = f"{wait:g}"
        try:
            response = sess.request("POST", path, params=params, content=body, headers=headers)
        except ApiError as exc:
            if exc.status == 409 and wait is not None:
                raise ApiError(409, f"command {command} not delivered: {exc.message}", exc.kind) from None
            raise
        if wait is None:
            done(output, f"command {command} sent to device {device}", response.status_code)
        elif response.status_code == 200:
            done(output, f"command {command} delivered to device {device}", 200)
        else:
            done(output, f"command {command} sent to device {device}; no delivery outcome within {wait:g}s",
                 response.status_code)


def _check_json(text: str, what: str) -> None:
    import json

    try:
        json.loads(text)
    except ValueError as exc:
        raise KedgeError(f"{what} is not valid JSON: {exc}") from None


def stream(
    app: AppOpt = None,
    type_: Annotated[str | None, typer.Option("--type", "-t", help="only events of this CloudEvent type, "
                                              "e.g. io.drogue.event.v1 or io.drogue.connection.v1")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="only this channel (the event subject)")]
    = None,
    device: Annotated[str | None, typer.Option(
        "--device", "-d", help="only events of this device (or sent by it, as a gateway)")] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="stop after this many events")] = None,
    group_id: Annotated[str | None, typer.Option("--group-id", help="a consumer group, to resume where it left "
                                                 "(default: a temporary group, live events only)")] = None,
    output: OutputOpt = ReadOutput.table,
    context: ContextOpt = None,
) -> None:
    """Follow an application's events live over the WebSocket integration (Ctrl-C stops).

    -o json prints each event as one JSON line (a structured CloudEvent); the default is one short line each.
    A password login is renewed before it expires, without reconnecting.
    Example: kedge stream -a my-app
    Example: kedge stream -a my-app --type io.drogue.connection.v1 -o json
    Example: kedge stream -a my-app --device dev1 --channel telemetry -n 1 -o json | jq .data
    """
    from kedge.client.stream import stream_events

    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        filters = {"type": type_, "channel": channel, "device": device, "group_id": group_id}
        try:
            got = asyncio.run(stream_events(sess, application, filters, count, _printer(output)))
        except KeyboardInterrupt:
            return
        if count is not None and got < count:
            raise KedgeError(f"the stream ended after {got} of {count} events")


def _printer(output: ReadOutput) -> Any:
    import orjson

    def print_event(event: dict[str, Any]) -> None:
        if output is ReadOutput.json:
            sys.stdout.write(orjson.dumps(event).decode() + "\n")
        elif output is ReadOutput.yaml:
            import yaml

            sys.stdout.write("---\n" + yaml.safe_dump(event, sort_keys=False, allow_unicode=True))
        else:
            data = event.get("data", event.get("data_base64", ""))
            shown = data if isinstance(data, str) else orjson.dumps(data).decode()
            fields = [event.get("time", ""), event.get("type", ""), event.get("sender") or event.get("device", "")]
            if output is ReadOutput.wide:
                fields += [event.get("id", ""), event.get("datacontenttype", "")]
            sys.stdout.write(" ".join(str(f) for f in [*fields, event.get("subject", ""), shown]) + "\n")
        sys.stdout.flush()

    return print_event
