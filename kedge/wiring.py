"""Wiring of the device endpoints: the registry's authenticator and the shared publisher, once per process.

``ingress`` never imports ``registry``; this module (in ``kedge``, which may import everything) hands the
registry's in-process :class:`~registry.authn.authenticator.RegistryAuthenticator` (same database, with its
verification cache) to an endpoint as a :class:`schemas.auth.DeviceAuthenticator`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from ingress.http import Resources
from ingress.http.commands import CommandWaits
from ingress.metrics import IngressMetrics
from ingress.publish import Publisher
from kedge.settings import Settings
from schemas.auth import DeviceAuthenticator
from schemas.registry import RegistryChange
from topology.names import COMMANDS, REGISTRY

log = logging.getLogger(__name__)

#: how long an endpoint waits for Kafka at start before serving anyway (it answers 503 until connected)
KAFKA_START_WAIT_S = 5.0
#: retry interval of the invalidation consumer while Kafka or the `registry` topic is missing
INVALIDATION_RETRY_S = 2.0


@asynccontextmanager
async def registry_authenticator(settings: Settings) -> AsyncIterator[DeviceAuthenticator]:
    """The registry's in-process authenticator on the registry database (the API host migrates it).

    Its verification cache is kept honest by :func:`cache_invalidation` (registry changes from Kafka), so a
    disabled or deleted device is refused within moments, not after the cache TTL.
    """
    from registry.authn.authenticator import RegistryAuthenticator
    from registry.db import create_engine

    engine = create_engine(settings.registry_database_url)
    try:
        authenticator = RegistryAuthenticator(engine, cache_size=settings.registry.auth_cache_size,
                                              cache_ttl_s=settings.registry.auth_cache_ttl_s)
        async with cache_invalidation(settings, authenticator.invalidate):
            yield authenticator
    finally:
        await engine.dispose()


@asynccontextmanager
async def cache_invalidation(
    settings: Settings, invalidate: Callable[[RegistryChange], None]
) -> AsyncIterator[None]:
    """Feed every change on the internal ``registry`` topic to ``invalidate`` while the block runs.

    Reads all partitions from their end (no consumer group: every endpoint process sees every change). The
    topic is never subscribed to by name (that would auto-create it with the wrong partition count); until it
    exists the consumer retries. Records missed while Kafka is down are covered by the cache TTL.
    """
    task = asyncio.create_task(_invalidation_loop(settings, invalidate), name="kedge-authn-invalidation")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _invalidation_loop(settings: Settings, invalidate: Callable[[RegistryChange], None]) -> None:
    from aiokafka.errors import KafkaError
    from aiokafka.structs import TopicPartition

    from kedge import kafka

    warned = False
    while True:
        consumer = kafka.consumer(settings.kafka, group_id=None, enable_auto_commit=False,
                                  auto_offset_reset="latest")
        try:
            await consumer.start()
            partitions = consumer.partitions_for_topic(REGISTRY) if REGISTRY in await consumer.topics() else None
            if not partitions:
                raise LookupError(f"topic {REGISTRY!r} does not exist (run `kedge topology apply`)")
            consumer.assign([TopicPartition(REGISTRY, p) for p in sorted(partitions)])
            # (on Tansu the "end" may be a few records early; re-reading an old change only drops a cache entry)
            await consumer.seek_to_end()
            log.info("authentication cache follows the %r topic", REGISTRY)
            warned = False
            async for record in consumer:
                try:
                    invalidate(RegistryChange.model_validate_json(record.value or b""))
                except ValueError as exc:
                    log.warning("ignoring malformed registry change at %s/%s: %s", record.partition,
                                record.offset, exc)
        except (KafkaError, OSError, LookupError) as exc:
            if not warned:
                log.warning("authentication cache invalidation waiting: %s", exc)
                warned = True
        finally:
            await consumer.stop()
        await asyncio.sleep(INVALIDATION_RETRY_S)


@asynccontextmanager
async def publisher(settings: Settings, metrics: IngressMetrics) -> AsyncIterator[Publisher]:
    """The process's one publisher; connected in the background, flushed and closed on exit."""
    pub = Publisher.from_settings(settings.kafka, on_outcome=metrics.outcome)
    await pub.start(wait_s=min(KAFKA_START_WAIT_S, settings.kafka.publish_timeout_s))
    try:
        yield pub
    finally:
        await pub.stop()


def http_resources(
    settings: Settings, metrics: IngressMetrics
) -> Callable[[], AbstractAsyncContextManager[Resources]]:
    """The lifespan resources of the HTTP endpoint (authenticator + publisher + command waits)."""

    @asynccontextmanager
    async def resources() -> AsyncIterator[Resources]:
        async with (
            registry_authenticator(settings) as authenticator,
            publisher(settings, metrics) as pub,
            command_waits(settings) as waits,
        ):
            yield Resources(authenticator, pub, waits)

    return resources


@asynccontextmanager
async def command_waits(settings: Settings) -> AsyncIterator[CommandWaits]:
    """The HTTP endpoint's command waits (``ct``) on the process's own :class:`~ingress.state_client.StateClient`
    (its own instance id and lease), started in the background: the endpoint serves publishes while Kafka or
    the internal topics are missing, and requests wait their ``ct`` without a command until it runs."""
    from ingress.state_client import StateClient

    waits = CommandWaits()
    state = StateClient(settings.kafka, settings.lease, instance_id=f"http-{uuid.uuid4()}",
                        on_command=waits.on_command, require_topics=(COMMANDS,), topology=settings.topology)
    task = asyncio.create_task(_start_state(state, waits), name="kedge-http-state-client")
    try:
        yield waits
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await waits.close()  # answers the waiting requests and sends their poll ends
        with contextlib.suppress(Exception):  # (also a start cut short by the shutdown)
            await state.stop(release=waits.link is not None)


async def _start_state(state: Any, waits: CommandWaits) -> None:
    warned = False
    while True:
        try:
            await state.start()
        except Exception as exc:
            if not warned:
                log.warning("command delivery to HTTP devices waiting: %s", exc or type(exc).__name__)
                warned = True
            with contextlib.suppress(Exception):
                await state.stop(release=False)
            await asyncio.sleep(INVALIDATION_RETRY_S)
            continue
        waits.link = state
        log.info("command delivery to HTTP devices ready (instance %s)", state.instance_id)
        return


def mqtt_resources(settings: Settings, metrics: IngressMetrics) -> Callable[[], AbstractAsyncContextManager[Any]]:
    """The resources of the MQTT endpoint (authenticator + publisher), as ``ingress.mqtt.endpoint.MqttResources``."""
    from ingress.mqtt.endpoint import MqttResources

    @asynccontextmanager
    async def resources() -> AsyncIterator[MqttResources]:
        async with registry_authenticator(settings) as authenticator, publisher(settings, metrics) as pub:
            yield MqttResources(authenticator, pub)

    return resources
