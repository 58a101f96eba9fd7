"""The API host (`kedge serve api`): one FastAPI app serving the registry, access, device authentication
and, later, the command API. OpenAPI docs at ``/docs``; ``/health``, ``/ready`` and Prometheus ``/metrics``.

Routers are composed in ONE place, :func:`routers`: add a new API there. :func:`build` wires the parts from
:class:`~kedge.settings.Settings` (the registry gets its engine and producer factory injected); the app's
lifespan applies the migrations, creates the local admin user on first start and runs the outbox relay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from kedge.operators import FollowerTask
from kedge.settings import Settings
from registry import db
from registry.access import Access, AccessConfig
from registry.access import install as install_access
from registry.access.secrets_dir import ADMIN_FILE
from registry.api import device_auth, errors, resources
from registry.authn.authenticator import RegistryAuthenticator
from registry.outbox import OutboxRelay
from registry.store import Registry
from schemas.registry import RegistryChange

log = logging.getLogger("kedge.api")

ProducerFactory = Callable[[], AIOKafkaProducer]


def routers() -> list[APIRouter]:
    """Every router the API host serves (the one place to add one)."""
    from integrations.commands.api import router as command_router
    from registry.access import routers as access_routers

    return [resources.router, device_auth.router, *access_routers(), command_router, _ops_router()]


@dataclass
class ApiHost:
    """The wired parts, for tests and for the lifespan."""

    settings: Settings
    engine: AsyncEngine
    registry: Registry
    relay: OutboxRelay
    authenticator: RegistryAuthenticator
    access: Access
    app: FastAPI


def _ops_router() -> APIRouter:
    ops = APIRouter(tags=["operations"])

    @ops.get("/health", summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get("/ready", summary="Readiness: the registry database answers")
    async def ready(request: Request) -> JSONResponse:
        host: ApiHost = request.app.state.api_host
        try:
            await asyncio.wait_for(db.ping(host.engine), 5.0)
        except Exception as exc:
            return JSONResponse({"ready": False, "reason": f"database: {exc}"}, status_code=503)
        # Kafka trouble does not make the API unready: writes still commit, the outbox holds the changes
        return JSONResponse({"ready": True, "outbox_error": host.relay.last_error})

    @ops.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return ops


def build(settings: Settings, *, producer_factory: ProducerFactory | None = None,
          operators: bool = False) -> ApiHost:
    """Wire the API host from ``settings``; ``producer_factory`` defaults to ``kedge.kafka.producer``.

    With ``operators`` (what ``kedge serve api`` does) the host also runs the registry follower: the topic
    operator and the registry-events agent (``agents.registry_follower``, wired by ``kedge.operators``).
    """
    from integrations.commands.api import install as install_commands
    from kedge import kafka
    from kedge.integration_wiring import command_api

    engine = db.create_engine(settings.registry_database_url)
    authenticator = RegistryAuthenticator(engine, cache_size=settings.registry.auth_cache_size,
                                          cache_ttl_s=settings.registry.auth_cache_ttl_s)
    factory = producer_factory or (lambda: kafka.producer(settings.kafka))
    relay = OutboxRelay(engine, factory, retry_s=settings.registry.outbox_retry_s,
                        max_backoff_s=settings.registry.outbox_max_backoff_s)

    def committed(changes: list[RegistryChange]) -> None:
        authenticator.invalidate_all(changes)
        relay.notify()

    registry = Registry(engine, on_commit=committed)
    access = Access.create(engine, AccessConfig(
        data_dir=settings.data_dir,
        oidc_issuer=settings.api.oidc_issuer,
        oidc_audience=settings.api.oidc_audience,
        jwt_ttl_s=settings.api.jwt_ttl_s,
        anonymous_write=settings.registry.anonymous_write,
        admin_username=settings.api.admin_username,
        local_issuer=settings.api.jwt_issuer,
        jwks_cache_s=settings.api.jwks_cache_s,
    ))
    commands = command_api(settings, access, registry)  # the command API (integrations/commands)
    follower = FollowerTask(settings, registry) if operators else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.migrate(engine)
        name, _password, created = await access.ensure_admin()
        if created:
            # never the password itself: logs travel further than the 0600 file
            log.warning("created the local admin user %r; its password is in %s", name,
                        settings.data_dir / ADMIN_FILE)
        relay.start()
        if follower is not None:
            follower.start()
        log.info("API host ready on %s://%s:%s", "https" if settings.api.tls_cert else "http",
                 settings.api.host, settings.api.port)
        try:
            yield
        finally:
            if follower is not None:
                await follower.stop()
            await relay.stop()
            await commands.bus.stop()
            await engine.dispose()

    app = FastAPI(title="Kedge API", version="0.1.0", lifespan=lifespan,
                  description="Device registry (Drogue Cloud 0.10 compatible), access, device authentication")
    errors.install(app)
    install_access(app, access)
    resources.install(app, registry)
    device_auth.install(app, authenticator, anonymous=settings.registry.device_auth_anonymous)
    install_commands(app, commands)
    host = ApiHost(settings, engine, registry, relay, authenticator, access, app)
    app.state.api_host = host
    for router in routers():
        app.include_router(router)
    return host


def serve(settings: Settings) -> None:
    """Run the API host in the foreground (uvicorn) until SIGINT/SIGTERM; HTTPS only with ``api.tls_cert`` and
    ``api.tls_key`` (a bad TLS setting: :class:`~kedge.tls.TlsSettingsError`, before anything starts).

    The socket is bound (and listening) before the application starts, so ``api.port`` 0 works and a client
    that connects as soon as the start is logged is served once the start completes, never refused.
    """
    import uvicorn

    from ingress.http.server import bind
    from kedge.tls import listener_context

    tls = listener_context(settings.api.tls_cert, settings.api.tls_key, setting="KEDGE_API__TLS")
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    sock = bind(settings.api.host, settings.api.port)
    bound = settings.api.model_copy(update={"port": sock.getsockname()[1]})
    host = build(settings.model_copy(update={"api": bound}), operators=True)
    config = uvicorn.Config(host.app, log_level=settings.log_level, access_log=settings.log_level == "debug",
                            ssl_context_factory=None if tls is None else (lambda _config, _default: tls))
    uvicorn.Server(config).run(sockets=[sock])
