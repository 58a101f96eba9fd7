"""`kedge create|get|edit|delete|label app|device` (drg's tree, reference §11)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kedge.commands.manage_common import (
    APPS,
    AppOpt,
    ContextOpt,
    OutputOpt,
    alias,
    app_of,
    app_path,
    create,
    delete,
    device_path,
    done,
    edit,
    editor_command,
    get,
    label,
    operation,
    session,
    show,
)
from kedge.errors import KedgeError
from kedge.output import ReadOutput

if TYPE_CHECKING:
    from kedge.client.api import Session

SpecOpt = Annotated[str | None, typer.Option("--spec", "-s", "--data", help="the spec section, as JSON")]
FileOpt = Annotated[Path | None, typer.Option(
    "--file", "-f", help="the whole resource (metadata, spec) from a JSON or YAML file", exists=False)]
LabelsOpt = Annotated[list[str] | None, typer.Option(
    "--labels", "-l", help="label selector: k, !k, k=v, k!=v, 'k in (a,b)'; repeat or comma = AND")]
IgnoreMissing = Annotated[bool, typer.Option("--ignore-missing", help="succeed if it does not exist")]
LabelArgs = Annotated[list[str], typer.Argument(help="k=v sets a label, k- removes it")]

# ------------------------------------------------------------------------------------------- building


def _read_file(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise KedgeError(f"cannot read {path}: {exc.strerror}") from None


def _resource_input(kind: str, name: str, app: str | None, spec: str | None, file: Path | None) -> dict[str, Any]:
    """The body of a create from NAME and ``--spec`` or ``-f``."""
    from kedge.client.edits import parse_json_object, parse_resource_text

    if spec is not None and file is not None:
        raise typer.BadParameter("give either --spec or --file, not both")
    if file is not None:
        body = parse_resource_text(_read_file(file), str(file))
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise KedgeError(f"{file}: metadata must be an object")
        if meta.setdefault("name", name) != name:
            raise KedgeError(f"{file} describes {kind} {meta['name']!r}, not {name!r}")
    else:
        body = {"metadata": {"name": name}, "spec": parse_json_object(spec, "--spec") if spec else {}}
    if app is not None:
        body["metadata"].setdefault("application", app)
    return body


def _conflict_hint(kind: str, name: str, exc: Exception) -> KedgeError:
    from kedge.client.api import ApiError

    if isinstance(exc, ApiError) and exc.status == 409:
        err = ApiError(409, f"{kind} {name!r} was changed by someone else since it was read (optimistic lock "
                       f"on resourceVersion); get it again and re-apply your change", exc.kind)
        return err
    assert isinstance(exc, KedgeError)
    return exc


def update_resource(sess: Session, path: str, kind: str, name: str, change: Any, tries: int = 5) -> None:
    """Read-modify-write with ``change(resource) -> resource``; retried on a lost optimistic lock."""
    from kedge.client.api import ApiError

    for attempt in range(tries):
        current = sess.get_json(path)
        try:
            sess.request("PUT", path, json=change(current))
            return
        except ApiError as exc:
            if exc.status != 409 or attempt == tries - 1:
                raise _conflict_hint(kind, name, exc) from None


# -------------------------------------------------------------------------------------------- tables


def _labels(resource: dict[str, Any]) -> str:
    labels = resource.get("metadata", {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _app_rows(apps: list[dict[str, Any]], wide: bool) -> tuple[list[str], list[list[Any]]]:
    from kedge.client.edits import age

    if not wide:
        return ["NAME", "AGE"], [[a["metadata"]["name"], age(a["metadata"].get("creationTimestamp"))]
                                 for a in apps]
    rows = []
    for a in apps:
        meta = a["metadata"]
        ready = next((c.get("status") for c in (a.get("status") or {}).get("conditions") or []
                      if c.get("type") == "Ready"), "")
        rows.append([meta["name"], meta.get("uid", ""), meta.get("generation", ""), _labels(a), ready,
                     age(meta.get("creationTimestamp"))])
    return ["NAME", "UID", "GENERATION", "LABELS", "READY", "AGE"], rows


def _device_rows(devices: list[dict[str, Any]], wide: bool) -> tuple[list[str], list[list[Any]]]:
    from kedge.client.edits import age

    if not wide:
        return ["NAME", "AGE"], [[d["metadata"]["name"], age(d["metadata"].get("creationTimestamp"))]
                                 for d in devices]
    rows = []
    for d in devices:
        meta, spec = d["metadata"], d.get("spec") or {}
        firmware = (d.get("status") or {}).get("firmware") or {}
        rows.append([
            meta["name"], ",".join(spec.get("alias") or []),
            ",".join((spec.get("gatewaySelector") or {}).get("matchNames") or []), _labels(d),
            firmware.get("current", ""), firmware.get("target", ""), age(meta.get("creationTimestamp")),
        ])
    return ["NAME", "ALIASES", "GATEWAYS", "LABELS", "FIRMWARE CURRENT", "TARGET", "AGE"], rows


# ------------------------------------------------------------------------------------------------ apps


@alias(create, ["app", "application"])
def create_app(name: Annotated[str, typer.Argument(help="application name (a hostname)")],
               spec: SpecOpt = None, file: FileOpt = None, output: OutputOpt = ReadOutput.table,
               context: ContextOpt = None) -> None:
    """Create an application (you become its owner).

    Example: kedge create app my-app
    Example: kedge create app my-app --spec '{"publish":{"rules":[]}}'
    Example: kedge create app my-app -f app.yaml -o json
    """
    with operation(output), session(context) as sess:
        sess.request("POST", APPS, json=_resource_input("app", name, None, spec, file))
        done(output, f"app {name} created", 201)


@alias(get, ["apps", "app", "applications", "application"])
def get_apps(name: Annotated[str | None, typer.Argument(help="one application (default: all you may read)")]
             = None, labels: LabelsOpt = None, output: OutputOpt = ReadOutput.table,
             context: ContextOpt = None) -> None:
    """List applications, or show one.

    Example: kedge get apps
    Example: kedge get apps -l env=prod -o wide
    Example: kedge get app my-app -o yaml
    """
    with operation(output), session(context) as sess:
        if name is not None:
            one = sess.get_json(app_path(name))
            show(output, one, *_app_rows([one], output is ReadOutput.wide))
            return
        params = [("labels", sel) for sel in labels or []]
        apps = sess.get_json(APPS, params=params)
        show(output, apps, *_app_rows(apps, output is ReadOutput.wide))


@alias(delete, ["app", "application"])
def delete_app(name: Annotated[str, typer.Argument(help="the application")], ignore_missing: IgnoreMissing = False,
               output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Delete an application (soft while it still has devices: they are removed first).

    Example: kedge delete app my-app
    Example: kedge delete app my-app --ignore-missing -o json
    """
    with operation(output), session(context) as sess:
        _delete(sess, app_path(name), f"app {name}", ignore_missing, output)


def _delete(sess: Session, path: str, what: str, ignore_missing: bool, output: ReadOutput) -> None:
    from kedge.client.api import ApiError

    try:
        sess.request("DELETE", path)
    except ApiError as exc:
        if exc.status == 404 and ignore_missing:
            done(output, f"{what} not found (ignored)", 404)
            return
        raise
    done(output, f"{what} deleted", 204)


@alias(label, ["app", "application"])
def label_app(name: Annotated[str, typer.Argument(help="the application")], labels: LabelArgs,
              output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Set or remove labels of an application.

    Example: kedge label app my-app env=prod tier=edge
    Example: kedge label app my-app tier-
    """
    from kedge.client.edits import apply_labels, parse_label_args

    with operation(output), session(context) as sess:
        changes = parse_label_args(labels)
        update_resource(sess, app_path(name), "app", name, lambda r: apply_labels(r, changes))
        done(output, f"app {name} labelled", 204)


@alias(edit, ["app", "application"])
def edit_app(name: Annotated[str, typer.Argument(help="the application")], file: FileOpt = None,
             output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Edit an application in $EDITOR (YAML), or replace it with -f FILE (JSON or YAML).

    A concurrent change in between is refused (HTTP 409, optimistic locking on metadata.resourceVersion).
    Example: kedge edit app my-app
    Example: kedge get app my-app -o json > app.json && $EDITOR app.json && kedge edit app my-app -f app.json
    """
    with operation(output), session(context) as sess:
        _edit(sess, app_path(name), "app", name, file, output)


# --------------------------------------------------------------------------------------------- devices


@alias(create, ["device"])
def create_device(name: Annotated[str, typer.Argument(help="device name")], app: AppOpt = None,
                  spec: SpecOpt = None, file: FileOpt = None, output: OutputOpt = ReadOutput.table,
                  context: ContextOpt = None) -> None:
    """Create a device in an application.

    Example: kedge create device dev1 -a my-app --spec '{"credentials":{"credentials":[{"pass":"secret"}]}}'
    Example: kedge create device dev1 -a my-app -f device.yaml
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        sess.request("POST", device_path(application), json=_resource_input("device", name, application, spec, file))
        done(output, f"device {name} created in app {application}", 201)


@alias(get, ["devices", "device"])
def get_devices(name: Annotated[str | None, typer.Argument(help="one device (default: all)")] = None,
                app: AppOpt = None, labels: LabelsOpt = None, output: OutputOpt = ReadOutput.table,
                context: ContextOpt = None) -> None:
    """List the devices of an application, or show one (-o wide adds aliases, gateways, labels, firmware).

    Example: kedge get devices -a my-app
    Example: kedge get device dev1 -a my-app -o json
    Example: kedge get devices -a my-app -l 'floor in (1,2)' -o wide
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        if name is not None:
            one = sess.get_json(device_path(application, name))
            show(output, one, *_device_rows([one], output is ReadOutput.wide))
            return
        params = [("labels", sel) for sel in labels or []]
        devices = sess.get_json(device_path(application), params=params)
        show(output, devices, *_device_rows(devices, output is ReadOutput.wide))


@alias(delete, ["device"])
def delete_device(name: Annotated[str, typer.Argument(help="the device")], app: AppOpt = None,
                  ignore_missing: IgnoreMissing = False, output: OutputOpt = ReadOutput.table,
                  context: ContextOpt = None) -> None:
    """Delete a device (its live connections are closed).

    Example: kedge delete device dev1 -a my-app
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        _delete(sess, device_path(application, name), f"device {name}", ignore_missing, output)


@alias(label, ["device"])
def label_device(name: Annotated[str, typer.Argument(help="the device")], labels: LabelArgs, app: AppOpt = None,
                 output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Set or remove labels of a device.

    Example: kedge label device dev1 -a my-app floor=2 room-
    """
    from kedge.client.edits import apply_labels, parse_label_args

    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        changes = parse_label_args(labels)
        update_resource(sess, device_path(application, name), "device", name, lambda r: apply_labels(r, changes))
        done(output, f"device {name} labelled", 204)


@alias(edit, ["device"])
def edit_device(name: Annotated[str, typer.Argument(help="the device")], app: AppOpt = None,
                file: FileOpt = None, output: OutputOpt = ReadOutput.table, context: ContextOpt = None) -> None:
    """Edit a device in $EDITOR (YAML), or replace it with -f FILE (JSON or YAML).

    Example: kedge edit device dev1 -a my-app
    Example: kedge edit device dev1 -a my-app -f dev1.json
    """
    with operation(output), session(context) as sess:
        application = app_of(sess, app)
        _edit(sess, device_path(application, name), "device", name, file, output)


def _edit(sess: Session, path: str, kind: str, name: str, file: Path | None, output: ReadOutput) -> None:
    from kedge.client.api import ApiError
    from kedge.client.edits import parse_resource_text

    if file is not None:
        edited = parse_resource_text(_read_file(file), str(file))
    else:
        current = sess.get_json(path)
        text = _run_editor(current, kind, name)
        if text is None:
            done(output, f"{kind} {name}: no changes made", None)
            return
        edited = parse_resource_text(text, "the edited resource")
    meta = edited.setdefault("metadata", {})
    if isinstance(meta, dict):
        meta.setdefault("name", name)
    try:
        sess.request("PUT", path, json=edited)
    except ApiError as exc:
        raise _conflict_hint(kind, name, exc) from None
    done(output, f"{kind} {name} updated", 204)


def _run_editor(resource: dict[str, Any], kind: str, name: str) -> str | None:
    """Open the resource as YAML in $EDITOR; the edited text, or None if it was left unchanged."""
    import shlex
    import subprocess
    import tempfile

    import yaml

    original = yaml.safe_dump(resource, sort_keys=False, allow_unicode=True)
    with tempfile.NamedTemporaryFile("w+", suffix=".yaml", prefix=f"kedge-{kind}-{name}-") as f:
        f.write(original)
        f.flush()
        try:
            result = subprocess.run([*shlex.split(editor_command()), f.name], check=False)
        except OSError as exc:
            raise KedgeError(f"cannot start the editor {editor_command()!r}: {exc.strerror}") from None
        if result.returncode != 0:
            raise KedgeError(f"the editor exited with {result.returncode}; nothing was changed")
        f.seek(0)
        text = Path(f.name).read_text()
    return None if text == original else text
