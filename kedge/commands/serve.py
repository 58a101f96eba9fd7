"""`kedge serve <service>`: run one network service of the data plane in the foreground.

Each service lives in its own package (``registry``, ``ingress``, ``integrations``) and is imported lazily
here, so `kedge --help` stays fast and a process loads only what it runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Run one service: api, http, mqtt, mqtt-integration, ws-integration.",
                  no_args_is_help=True)


@app.command("http")
def http(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: KEDGE_HTTP__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: KEDGE_HTTP__PORT, 8088; 0: any)")] = None,
) -> None:
    """Run the HTTP device endpoint (POST /v1/{channel}, reference §7.1) until Ctrl-C or SIGTERM.

    Devices publish with Basic auth; events go to events-<app> on Kafka. Metrics on /metrics.
    HTTPS only with KEDGE_HTTP__TLS_CERT and _TLS_KEY (PEM); client certificates as credentials: _TLS_CLIENT_CA.
    Example: kedge serve http --port 8088
    Example: curl -u dev1@app1:secret -d '{"temp":42}' http://127.0.0.1:8088/v1/telemetry
    """
    import logging

    from ingress.http.server import bind, build_app, run, tls_context
    from ingress.metrics import IngressMetrics
    from kedge.kafka import fail_fast_on_security
    from kedge.output import console
    from kedge.settings import Settings
    from kedge.wiring import http_resources

    settings = Settings.load()
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update={"http": settings.http.model_copy(update=changes)})
    fail_fast_on_security(settings.kafka)  # untrusted Kafka certificate or refused SASL login: one line
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # imported with the registry; nothing to say here
    tls = tls_context(settings)  # HTTPS only when KEDGE_HTTP__TLS_CERT/_KEY are set
    sock = bind(settings.http.host, settings.http.port, reuse_port=settings.http.reuse_port)
    bound_host, bound_port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"

    def ready() -> None:
        console.print(f"http endpoint listening on {scheme}://{bound_host}:{bound_port}", highlight=False)

    metrics = IngressMetrics("http")
    endpoint = build_app(settings, metrics, http_resources(settings, metrics), on_ready=ready)
    run(endpoint, sock, log_level=settings.log_level, access_log=settings.http.access_log, ssl_context=tls)


@app.command("mqtt")
def mqtt(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: KEDGE_MQTT__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: KEDGE_MQTT__PORT, 1883; 0: any)")] = None,
) -> None:
    """Run the MQTT device endpoint (MQTT 3.1.1 and 5, reference §5) until Ctrl-C or SIGTERM.

    Devices connect with username <device>@<app> and their password, publish to <channel> (QoS 0 or 1) and
    subscribe to command/inbox/#; events go to events-<app> on Kafka. Needs `kedge worker` (device state).
    TLS listeners: KEDGE_MQTT__TLS_PORT (mqtts), _WSS_PORT (MQTT over wss), with _TLS_CERT, _TLS_KEY (PEM).
    Example: kedge serve mqtt --port 1883
    Example: mosquitto_pub -V mqttv5 -u dev1@app1 -P secret -q 1 -t telemetry -m '{"temp":42}'
    """
    import logging

    from ingress.metrics import IngressMetrics
    from ingress.mqtt.server import run
    from kedge.kafka import fail_fast_on_security
    from kedge.output import console
    from kedge.settings import Settings
    from kedge.wiring import mqtt_resources

    settings = Settings.load()
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(update=changes)})
    fail_fast_on_security(settings.kafka)  # untrusted Kafka certificate or refused SASL login: one line
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")

    def ready(listening: list[tuple[str, str, int]]) -> None:
        for kind, bound_host, bound_port in listening:
            scheme = "http" if kind == "metrics" else kind
            suffix = "/metrics" if kind == "metrics" else ""
            console.print(f"{kind} endpoint listening on {scheme}://{bound_host}:{bound_port}{suffix}",
                          highlight=False)

    metrics = IngressMetrics("mqtt")
    run(settings, metrics, mqtt_resources(settings, metrics), on_ready=ready)


@app.command("api")
def api(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: KEDGE_API__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: KEDGE_API__PORT, 8011; 0: any)")] = None,
) -> None:
    """Run the API host until Ctrl-C or SIGTERM: registry (/api/registry/v1alpha1), access tokens, device
    authentication (/api/v1/auth); OpenAPI docs on /docs, /health, /ready, /metrics.

    Applies the registry migrations at start and relays registry changes to the `registry` topic.
    HTTPS only with KEDGE_API__TLS_CERT and KEDGE_API__TLS_KEY (PEM).
    Example: kedge serve api --port 8011
    Example: curl http://127.0.0.1:8011/api/registry/v1alpha1/apps -H "Authorization: Bearer $TOKEN"
    """
    from kedge.apihost import serve
    from kedge.kafka import fail_fast_on_security
    from kedge.settings import Settings

    settings = Settings.load()
    fail_fast_on_security(settings.kafka)  # untrusted Kafka certificate or refused SASL login: one line
    changes = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    serve(settings.model_copy(update={"api": settings.api.model_copy(update=changes)}))


@app.command("ws-integration")
def ws_integration(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: KEDGE_INTEGRATION__WS_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: KEDGE_INTEGRATION__WS_PORT, 8082; 0: any)")] = None,
) -> None:
    """Run the WebSocket integration until Ctrl-C or SIGTERM: GET /{app} streams the app's events as
    structured CloudEvents (one text frame each); ?group_id=, filters ?type=&channel=&device=.
    wss:// only with KEDGE_INTEGRATION__WS_TLS_CERT and _WS_TLS_KEY (PEM).

    Example: kedge serve ws-integration --port 8082
    Example: websocat -H "Authorization: Bearer $TOKEN" 'ws://127.0.0.1:8082/my-app?type=io.drogue.connection.v1'
    """
    import logging

    from kedge.integration_wiring import run_ws_integration
    from kedge.kafka import fail_fast_on_security
    from kedge.output import console
    from kedge.settings import Settings

    settings = Settings.load()
    changes = {k: v for k, v in {"ws_host": host, "ws_port": port}.items() if v is not None}
    settings = settings.model_copy(update={"integration": settings.integration.model_copy(update=changes)})
    fail_fast_on_security(settings.kafka)  # untrusted Kafka certificate or refused SASL login: one line
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")

    scheme = "wss" if settings.integration.ws_tls_cert or settings.integration.ws_tls_key else "ws"

    def ready(bound_host: str, bound_port: int) -> None:
        console.print(f"ws integration listening on {scheme}://{bound_host}:{bound_port}", highlight=False)

    run_ws_integration(settings, ready)


@app.command("mqtt-integration")
def mqtt_integration(
    host: Annotated[str | None, typer.Option(help="address to listen on (default: KEDGE_INTEGRATION__MQTT_HOST)")]
    = None,
    port: Annotated[int | None, typer.Option(help="port (default: KEDGE_INTEGRATION__MQTT_PORT, 1884; 0: any)")]
    = None,
) -> None:
    """Run the MQTT integration (MQTT 3.1.1 and 5, reference §6) until Ctrl-C or SIGTERM.

    Applications subscribe to app/<app> (or $share/<group>/app/<app>, filters app/<app>/type/<type>...) and
    receive the app's events as CloudEvents; they send commands to command/<app>/<device>/<command>.
    TLS and WebSocket listeners: KEDGE_INTEGRATION__MQTT_TLS_PORT (+ _MQTT_TLS_CERT, _MQTT_TLS_KEY), _MQTT_WS_PORT.
    Example: kedge serve mqtt-integration --port 1884
    Example: mosquitto_sub -V mqttv5 -p 1884 -u alice -P "$API_KEY" -q 1 -t 'app/my-app/type/io.drogue.connection.v1'
    """
    import logging

    from kedge.kafka import fail_fast_on_security
    from kedge.mqtt_integration import run_mqtt_integration
    from kedge.output import console
    from kedge.settings import Settings

    settings = Settings.load()
    changes = {k: v for k, v in {"mqtt_host": host, "mqtt_port": port}.items() if v is not None}
    settings = settings.model_copy(update={"integration": settings.integration.model_copy(update=changes)})
    fail_fast_on_security(settings.kafka)  # untrusted Kafka certificate or refused SASL login: one line
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)

    def ready(listening: list[tuple[str, str, int]]) -> None:
        for scheme, bound_host, bound_port in listening:
            console.print(f"mqtt integration listening on {scheme}://{bound_host}:{bound_port}", highlight=False)

    run_mqtt_integration(settings, ready)
