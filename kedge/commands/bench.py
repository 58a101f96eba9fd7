"""`kedge bench mqtt|http|connect-storm|idle`: load a running Kedge with simulated devices and measure it.

The run creates its app and devices through the API host (admin credentials from the data dir, or options),
consumes `events-<app>` to measure end-to-end latency and delivered throughput, checks loss and duplicates by
per-device sequence numbers, and removes what it created (unless --keep).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from kedge.output import Output

app = typer.Typer(help="Benchmark a running Kedge: simulated MQTT/HTTP devices, end-to-end latency, loss checks.",
                  no_args_is_help=True)

Host = Annotated[str | None, typer.Option(help="endpoint address (default: the endpoint's KEDGE_* setting)")]
Port = Annotated[int | None, typer.Option(help="endpoint port (default: the endpoint's KEDGE_* setting)")]
ApiUrl = Annotated[str | None, typer.Option(help="API host (default: http://KEDGE_API__HOST:KEDGE_API__PORT)")]
KafkaOpt = Annotated[str | None, typer.Option("--kafka", help="Kafka bootstrap servers, to read events-<app> "
                                              "(default: KEDGE_KAFKA__BOOTSTRAP_SERVERS)")]
DataDir = Annotated[Path | None, typer.Option(help="the API host's data dir, for admin-credentials.json "
                                              "(default: KEDGE_DATA_DIR)")]
User = Annotated[str | None, typer.Option("--username", help="API user (instead of the data dir's admin)")]
Password = Annotated[str | None, typer.Option("--password", help="password of --username")]
Token = Annotated[str | None, typer.Option("--token", help="API bearer token (instead of a user)")]
AppOpt = Annotated[str | None, typer.Option("--app", help="use this existing app (with --device and "
                                            "--device-password) instead of creating one")]
DeviceOpt = Annotated[list[str] | None, typer.Option("--device", help="an existing device of --app (repeat)")]
DevicePassword = Annotated[str | None, typer.Option(help="the password of the --device devices")]
Devices = Annotated[int, typer.Option("--devices", "-n", min=1, help="simulated devices (one connection each)")]
Procs = Annotated[int, typer.Option("--procs", "-p", min=1, help="load generator processes")]
Rate = Annotated[float, typer.Option(min=0, help="messages per second in total; 0: flat out")]
Payload = Annotated[int, typer.Option(min=80, help="payload bytes per message")]
Duration = Annotated[float, typer.Option("--duration", "-d", min=0.5, help="seconds of load")]
Keep = Annotated[bool, typer.Option(help="keep the app and devices this run created")]
OutputOpt = Annotated[Output, typer.Option("--output", "-o", help="table (default) or json", case_sensitive=False)]
PlotOpt = Annotated[Path | None, typer.Option("--plot", help="write throughput and latency over time to this PNG")]
ServerPid = Annotated[list[int] | None, typer.Option(
    "--server-pid", help="watch this server process's CPU and RSS (default: the local one on the port)")]
Drain = Annotated[float, typer.Option(min=0, help="seconds to wait for outstanding acks after the load")]
ConnectRate = Annotated[float, typer.Option(min=0, help="connects per second while connecting; 0: as fast as "
                                            "possible")]


def _mqtt_version(value: str) -> int:
    if value in ("3.1.1", "3", "4", "v3"):
        return 4
    if value in ("5", "v5", "5.0"):
        return 5
    raise typer.BadParameter("3.1.1 or 5")


Version = Annotated[str, typer.Option("--mqtt-version", help="3.1.1 or 5")]
Qos = Annotated[int, typer.Option(min=0, max=1, help="QoS 0 or 1 (1: counted when PUBACKed)")]
Tls = Annotated[bool, typer.Option(help="MQTT over TLS (default port: KEDGE_MQTT__TLS_PORT or 8883)")]
Insecure = Annotated[bool, typer.Option(help="with --tls: do not verify the server certificate")]
Ca = Annotated[Path | None, typer.Option(help="with --tls: CA file to verify the server with")]
Inflight = Annotated[int, typer.Option(min=1, max=65535, help="QoS 1 publishes in flight per connection")]


def _config(protocol: str, scenario: str, host: str | None, port: int | None, api_url: str | None,
            kafka: str | None, data_dir: Path | None, username: str | None, password: str | None,
            token: str | None, app_name: str | None, device: list[str] | None, device_password: str | None,
            server_pid: list[int] | None, tls: bool = False, **kw: Any) -> Any:
    from kedge.bench.provision import admin_credentials
    from kedge.bench.run import BenchConfig
    from kedge.settings import Settings

    s = Settings.load()
    if protocol == "mqtt":
        default_port = (s.mqtt.tls_port or 8883) if tls else s.mqtt.port
        host, port = host or s.mqtt.host, port or default_port
    else:
        host, port = host or s.http.host, port or s.http.port
    if token is None and not (username and password):
        username, password = admin_credentials(data_dir or s.data_dir)
    if app_name and (not device or not device_password):
        raise typer.BadParameter("--app needs --device (one or more) and --device-password", param_hint="--app")
    return BenchConfig(
        protocol=protocol, scenario=scenario, host=host, port=port, tls=tls,
        api_url=api_url or f"http://{s.api.host}:{s.api.port}",
        kafka=s.kafka.model_copy(update={"bootstrap_servers": kafka or _bootstrap(s)}),
        token=token, username=username, password=password, app=app_name, device_names=list(device or []),
        device_password=device_password, server_pids=list(server_pid or []), **kw)


def _bootstrap(s: Any) -> str:
    """KEDGE_KAFKA__BOOTSTRAP_SERVERS if set, else the embedded broker's address (what `kedge up` uses)."""
    if "bootstrap_servers" in s.kafka.model_fields_set:
        return str(s.kafka.bootstrap_servers)
    return f"{s.broker.host}:{s.broker.port}"


def _run(config: Any, output: Output, plot: Path | None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from kedge.bench import report as rep
    from kedge.bench.run import run_bench
    from kedge.errors import KedgeError
    from kedge.output import err_console, print_json, print_table

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=err_console,
                  transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task("connecting …", total=config.duration_s)

        def progress(p: dict[str, Any]) -> None:
            p99 = p["p99_last_s_ms"]
            bar.update(task, completed=min(p["elapsed_s"], p["duration_s"]), description=(
                f"sent {p['sent']}  confirmed {p['confirmed']}  delivered {p['delivered']} "
                f"({p['delivered_last_s']}/s" + (f", p99 {p99:.1f} ms)" if p99 is not None else ")")))

        result = asyncio.run(run_bench(config, progress))
    if plot is not None and result.get("timeline"):
        try:
            rep.plot(result, plot)
            result["plot"] = str(plot)
        except KedgeError as exc:  # no matplotlib: the run itself still counts
            err_console.print(f"[yellow]warning:[/] {exc}", highlight=False)
    if output == Output.json:
        print_json(result)
    else:
        print_table(["", "kedge bench"], rep.summary_rows(result), title=None)
        if "plot" in result:
            err_console.print(f"plot written to {plot}", highlight=False)


@app.command("mqtt")
def mqtt(
    host: Host = None, port: Port = None, api_url: ApiUrl = None, kafka: KafkaOpt = None, data_dir: DataDir = None,
    username: User = None, password: Password = None, token: Token = None, app_name: AppOpt = None,
    device: DeviceOpt = None, device_password: DevicePassword = None,
    devices: Devices = 10, procs: Procs = 1, rate: Rate = 0.0, payload: Payload = 200, duration: Duration = 10.0,
    qos: Qos = 0, mqtt_version: Version = "3.1.1", tls: Tls = False, insecure: Insecure = False, ca: Ca = None,
    inflight: Inflight = 16, connect_rate: ConnectRate = 0.0, channel: Annotated[str, typer.Option(
        help="topic to publish to (the channel)")] = "telemetry",
    drain: Drain = 10.0, keep: Keep = False, output: OutputOpt = Output.table, plot: PlotOpt = None,
    server_pid: ServerPid = None,
) -> None:
    """Publish from N simulated MQTT devices (raw sockets, pre-encoded frames) and measure end to end.

    Example: kedge bench mqtt -n 100 -p 2 --qos 1 -d 10
    Example: kedge bench mqtt -n 1000 --rate 20000 --mqtt-version 5 -o json --plot mqtt.png
    """
    config = _config("mqtt", "publish", host, port, api_url, kafka, data_dir, username, password, token, app_name,
                     device, device_password, server_pid, tls=tls, tls_insecure=insecure,
                     tls_ca=str(ca) if ca else None, version=_mqtt_version(mqtt_version), qos=qos,
                     devices=devices, procs=procs, rate=rate, payload_size=payload, duration_s=duration,
                     inflight=inflight, connect_rate=connect_rate, channel=channel, drain_s=drain, keep=keep)
    _run(config, output, plot)


@app.command("http")
def http(
    host: Host = None, port: Port = None, api_url: ApiUrl = None, kafka: KafkaOpt = None, data_dir: DataDir = None,
    username: User = None, password: Password = None, token: Token = None, app_name: AppOpt = None,
    device: DeviceOpt = None, device_password: DevicePassword = None,
    devices: Devices = 16, procs: Procs = 1, rate: Rate = 0.0, payload: Payload = 200, duration: Duration = 10.0,
    channel: Annotated[str, typer.Option(help="the channel (POST /v1/<channel>)")] = "telemetry",
    drain: Drain = 10.0, keep: Keep = False, output: OutputOpt = Output.table, plot: PlotOpt = None,
    server_pid: ServerPid = None,
) -> None:
    """Publish from N simulated HTTP devices (one keep-alive connection each, one request in flight).

    Example: kedge bench http -n 64 -p 2 -d 10
    """
    config = _config("http", "publish", host, port, api_url, kafka, data_dir, username, password, token, app_name,
                     device, device_password, server_pid, devices=devices, procs=procs, rate=rate,
                     payload_size=payload, duration_s=duration, channel=channel, drain_s=drain, keep=keep)
    _run(config, output, plot)


@app.command("connect-storm")
def connect_storm(
    connect_rate: Annotated[float, typer.Option("--rate", min=1, help="connects per second in total")] = 200.0,
    host: Host = None, port: Port = None, api_url: ApiUrl = None, kafka: KafkaOpt = None, data_dir: DataDir = None,
    username: User = None, password: Password = None, token: Token = None, app_name: AppOpt = None,
    device: DeviceOpt = None, device_password: DevicePassword = None,
    devices: Devices = 100, procs: Procs = 1, duration: Duration = 10.0, mqtt_version: Version = "3.1.1",
    tls: Tls = False, insecure: Insecure = False, ca: Ca = None, keep: Keep = False,
    output: OutputOpt = Output.table, server_pid: ServerPid = None,
) -> None:
    """MQTT connects at M per second (each device connects, gets its CONNACK, disconnects; round robin).

    Reports connects/s sustained and the CONNECT -> CONNACK latency (it includes the device-state agent).
    Example: kedge bench connect-storm --rate 200 -n 200 -d 10
    """
    config = _config("mqtt", "connect-storm", host, port, api_url, kafka, data_dir, username, password, token,
                     app_name, device, device_password, server_pid, tls=tls, tls_insecure=insecure,
                     tls_ca=str(ca) if ca else None, version=_mqtt_version(mqtt_version), devices=devices,
                     procs=procs, duration_s=duration, connect_rate=connect_rate, keep=keep)
    _run(config, output, None)


@app.command("idle")
def idle(
    host: Host = None, port: Port = None, api_url: ApiUrl = None, kafka: KafkaOpt = None, data_dir: DataDir = None,
    username: User = None, password: Password = None, token: Token = None, app_name: AppOpt = None,
    device: DeviceOpt = None, device_password: DevicePassword = None,
    devices: Devices = 1000, procs: Procs = 1, duration: Duration = 5.0, mqtt_version: Version = "3.1.1",
    connect_rate: ConnectRate = 0.0, keep: Keep = False, output: OutputOpt = Output.table,
    server_pid: ServerPid = None,
) -> None:
    """Hold N idle MQTT connections and report the endpoint's RSS per connection (local endpoint, psutil).

    Example: kedge bench idle -n 10000 -p 2
    """
    config = _config("mqtt", "idle", host, port, api_url, kafka, data_dir, username, password, token, app_name,
                     device, device_password, server_pid, version=_mqtt_version(mqtt_version), devices=devices,
                     procs=procs, duration_s=duration, connect_rate=connect_rate, keep=keep)
    _run(config, output, None)
