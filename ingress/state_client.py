"""`StateClient`: how a connection-oriented endpoint talks to the device-state agents.

One per endpoint process (one *instance id*, fresh per process start). It

* heartbeats the instance lease on ``endpoint-heartbeats`` in the background (the first heartbeat is
  acknowledged before :meth:`start` returns, so the lease exists before any connect);
* sends :class:`ConnectRequest`/:class:`DisconnectRequest` to ``device-state`` (key = device key);
* reads ``endpoint-control``: only partition ``control_partition(instance_id)``, dropping records whose key
  is not its instance id; replies resolve the pending :meth:`connect` (many concurrent connects share this
  one consumer, matched by request id), kicks go to ``on_kick``, commands to ``on_command``, command
  outcomes (when this instance asked for them as ``reply_to``) to ``on_outcome``;
* registers and ends command polls (:meth:`command_poll`, the HTTP endpoint's ``ct`` wait) on
  ``iot-commands``: waiters that are not connections (no connect, no connection events).

:meth:`connect` waits at most ``lease.connect_timeout_s`` and raises :class:`StateUnavailable` then (the
endpoint answers "server unavailable", never a silent accept); the caller should then send a
``disconnect(reason=error)`` for that connection id, which ends it if the agent accepted it late. A reply
``rejected(error)`` (the agent could not write the connection events) is cleaned up the same way,
automatically.

:meth:`stop` releases the lease (``lease_s=0``): the agents end the connections this instance still holds
with ``reason=endpoint_lost`` and their Wills (those devices never sent a DISCONNECT). An endpoint shutting
down cleanly disconnects its devices first. The producer: pass the process's shared, started
``AIOKafkaProducer`` (it stays yours) or let the client build and own one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerClosed

from kedge import kafka
from kedge.errors import KedgeError
from kedge.settings import KafkaSettings, LeaseSettings, TopologySettings
from schemas.keys import device_key
from schemas.state import (
    CommandOutcome,
    CommandPoll,
    CommandPollEnd,
    ConnectRequest,
    DeliverCommand,
    DisconnectRequest,
    Heartbeat,
    Kick,
    MalformedRecord,
    Reason,
    Reply,
    Will,
    control_partition,
    decode_control,
)
from topology import names

log = logging.getLogger(__name__)

class StateUnavailable(Exception):
    """The device-state agents did not answer in time (or Kafka is unreachable): refuse the CONNECT."""


class TopicsNotReady(StateUnavailable, KedgeError):
    """At start: an internal topic is missing or has the wrong partition count (one line for the operator)."""


class StateClient:
    def __init__(
        self,
        kafka_settings: KafkaSettings,
        lease_settings: LeaseSettings,
        instance_id: str | None = None,
        producer: AIOKafkaProducer | None = None,
        *,
        on_kick: Callable[[Kick], Awaitable[None] | None] | None = None,
        on_command: Callable[[DeliverCommand], Awaitable[None] | None] | None = None,
        on_outcome: Callable[[CommandOutcome], Awaitable[None] | None] | None = None,
        require_topics: tuple[str, ...] = (),
        topology: TopologySettings | None = None,
    ) -> None:
        self.kafka_settings = kafka_settings
        self.lease = lease_settings
        self.instance_id = instance_id or f"endpoint-{uuid.uuid4()}"
        self._producer = producer
        self._owns_producer = producer is None
        self.on_kick = on_kick
        self.on_command = on_command
        self.on_outcome = on_outcome
        #: further topics that must exist for :meth:`start` to succeed (never auto-created by a send)
        self.require_topics = require_topics
        #: the declared partition counts :meth:`start` checks (None: existence and co-partitioning only)
        self.topology = topology
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        #: connection ids with a connect in flight -> the kick that overtook its reply, if any
        self._connecting: dict[str, Kick | None] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0
        self._control_partitions = 1

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("StateClient is not started")
        return self._producer

    async def start(self) -> None:
        """Start reading ``endpoint-control`` and heartbeating; returns once the lease is acknowledged.

        First checks that every topic this client writes or reads exists, with its declared partition count
        when ``topology`` was given (and, either way, that the device-keyed ones agree): otherwise
        :class:`TopicsNotReady` ("topic X missing — run `kedge topology apply`"), before anything is sent. The
        clients this builds itself never let the broker auto-create a topic
        (:func:`kedge.kafka.forbid_auto_create`), also when the broker lost its topics while they run.
        """
        try:
            await self._start()
        except BaseException:
            with contextlib.suppress(Exception):  # what this start built is closed again
                await self.stop(release=False)
            raise

    async def _start(self) -> None:
        if self._producer is None:
            self._producer = kafka.producer(self.kafka_settings, acks="all", auto_create_topics=False)
            await self._producer.start()
        consumer = kafka.consumer(
            self.kafka_settings, enable_auto_commit=False, auto_offset_reset="latest",
            client_id=f"{self.kafka_settings.client_id}-{self.instance_id}",
            fetch_max_wait_ms=self.lease.control_fetch_wait_ms, auto_create_topics=False,
        )
        await consumer.start()
        self._consumer = consumer
        actual = await kafka.topic_partitions(consumer._client)
        problems = kafka.topic_problems(actual, self._declared()) or _copartitioning(actual)
        if problems:
            raise TopicsNotReady("; ".join(problems))
        self._control_partitions = actual[names.ENDPOINT_CONTROL]
        tp = TopicPartition(names.ENDPOINT_CONTROL,
                            control_partition(self.instance_id, self._control_partitions))
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        await consumer.position(tp)  # resolve "latest" now: replies to our first connect come after it
        await (await self._heartbeat(self.lease.lease_s))
        self._tasks = [asyncio.create_task(self._read(), name="state-client-read"),
                       asyncio.create_task(self._beat(), name="state-client-heartbeat")]
        log.info("endpoint instance %s holds a lease of %gs", self.instance_id, self.lease.lease_s)

    def _declared(self) -> dict[str, int | None]:
        """The topics :meth:`start` needs, with their declared partition counts when they are known."""
        t = self.topology
        device, endpoint = (t.device_partitions, t.endpoint_partitions) if t else (None, None)
        declared: dict[str, int | None] = {names.DEVICE_STATE: device, names.ENDPOINT_CONTROL: endpoint,
                                           names.ENDPOINT_HEARTBEATS: endpoint}
        for topic in self.require_topics:
            declared[topic] = device if topic in _DEVICE_KEYED else None
        return declared

    async def stop(self, *, release: bool = True) -> None:
        """Stop; with ``release`` the lease ends now (see the module doc). ``release=False`` behaves like a
        crashed process: the lease runs out on its own (tests and benchmarks use it)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if release and self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(await self._heartbeat(0.0), self.lease.connect_timeout_s)
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(StateUnavailable("state client stopped"))
        self._pending.clear()
        if self._owns_producer and self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # ------------------------------------------------------------------------------------------ requests

    async def connect(
        self,
        app: str,
        device: str,
        connection_id: str,
        protocol: str,
        app_uid: str,
        device_uid: str,
        will: Will | None = None,
    ) -> Reply:
        """Ask to make ``connection_id`` the holder of the device; the agent's :class:`Reply`.

        Raises :class:`StateUnavailable` when no reply arrives within ``lease.connect_timeout_s``. A kick of
        this connection that overtakes its accepting reply (the agent sends kicks at once, accepts only after
        the events' ack) turns the result into a rejection with the kick's reason, and ``on_kick`` is not
        called: the endpoint never completes a connection the agent already ended.
        """
        request_id = uuid.uuid4().hex
        request = ConnectRequest(app, device, connection_id, self.instance_id, protocol, app_uid, device_uid,
                                 request_id, will)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = fut
        self._connecting[connection_id] = None
        try:
            async with asyncio.timeout(self.lease.connect_timeout_s):
                sent = await self.producer.send(names.DEVICE_STATE, request.to_bytes(),
                                                key=device_key(app, device).encode())
                sent.add_done_callback(_consume_exception)  # a failed send shows as no reply (timeout)
                reply = await fut
        except TimeoutError:
            raise StateUnavailable(f"no answer from the device-state agents within "
                                   f"{self.lease.connect_timeout_s}s") from None
        except StateUnavailable:
            raise
        except Exception as e:  # Kafka errors
            raise StateUnavailable(f"cannot reach the device-state agents: {e}") from e
        finally:
            self._pending.pop(request_id, None)
            overtaken = self._connecting.pop(connection_id, None)
        if reply.accepted and overtaken is not None:
            # taken over (or blocked) before our accept arrived: the agent already ended this connection
            return Reply(reply.request_id, connection_id, False, overtaken.reason)
        if not reply.accepted and reply.reason is Reason.ERROR:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.disconnect(app, device, connection_id, Reason.ERROR, skip_will=True),
                                       self.lease.connect_timeout_s)
        return reply

    async def disconnect(
        self, app: str, device: str, connection_id: str, reason: Reason = Reason.NORMAL, skip_will: bool = False
    ) -> None:
        """The connection ended; returns once Kafka acknowledged the request (stale ones are ignored).

        Retried every ``kafka.connect_retry_s`` while Kafka refuses it: a lost disconnect would leave the device
        "connected" for good (this endpoint keeps its lease), while a late one is harmless (stale by its
        connection id once the device reconnected). Cancel the call to give up."""
        request = DisconnectRequest(app, device, connection_id, self.instance_id, reason, skip_will)
        failures = 0
        while True:
            try:
                await (await self.producer.send(names.DEVICE_STATE, request.to_bytes(),
                                                key=device_key(app, device).encode()))
            except ProducerClosed:
                raise
            except (KafkaError, OSError) as e:
                failures += 1
                if failures == 1:
                    log.warning("disconnect of %s/%s (%s) not taken by Kafka: %r; retrying", app, device,
                                connection_id, e)
                await asyncio.sleep(self.kafka_settings.connect_retry_s)
                continue
            if failures:
                log.info("disconnect of %s/%s delivered after %d failed attempts", app, device, failures)
            return

    async def command_poll(
        self, app: str, device: str, poll_id: str, until: float, sender: str | None = None
    ) -> None:
        """Register a command waiter (HTTP ``ct``) for ``device`` via ``sender``; returns once Kafka acked it.

        A command routed to it arrives at ``on_command`` as a :class:`DeliverCommand` whose ``connection_id``
        is ``poll_id``. Goes to ``iot-commands`` (see :mod:`schemas.state`: ordered with the commands)."""
        poll = CommandPoll(app, device, self.instance_id, poll_id, until, sender)
        await (await self.producer.send(names.COMMANDS, poll.to_bytes(),
                                        key=device_key(app, poll.route).encode()))

    async def end_command_poll(self, app: str, device: str, poll_id: str, sender: str | None = None) -> None:
        """The waiter is gone: commands processed after this are not routed to it (acked by Kafka)."""
        end = CommandPollEnd(app, device, poll_id, sender)
        await (await self.producer.send(names.COMMANDS, end.to_bytes(), key=device_key(app, end.route).encode()))

    async def command_outcome(self, command: DeliverCommand, delivered: bool, reason: str | None = None) -> None:
        """Report to the command's requester (``reply_to``) whether it reached the device; no-op without one."""
        if not command.reply_to:
            return
        outcome = CommandOutcome(command.request_id, delivered, reason)
        partition = control_partition(command.reply_to, self._control_partitions)
        await (await self.producer.send(names.ENDPOINT_CONTROL, outcome.to_bytes(),
                                        key=command.reply_to.encode(), partition=partition))

    # ---------------------------------------------------------------------------------------- background

    async def _heartbeat(self, lease_s: float) -> Awaitable[Any]:
        self._seq += 1
        hb = Heartbeat(self.instance_id, self._seq, time.time(), lease_s)
        ack: Awaitable[Any] = await self.producer.send(names.ENDPOINT_HEARTBEATS, hb.to_bytes(),
                                                       key=self.instance_id.encode())
        return ack

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease.heartbeat_interval_s)
            try:
                ack = asyncio.ensure_future(await self._heartbeat(self.lease.lease_s))
            except Exception as e:  # keep beating; the lease covers a few missed beats
                log.warning("heartbeat of %s failed: %s", self.instance_id, e)
                continue
            # the ack is not awaited (beats must not queue up behind a slow broker), but its failure is ours
            ack.add_done_callback(self._heartbeat_acked)

    def _heartbeat_acked(self, ack: asyncio.Future[Any]) -> None:
        if not ack.cancelled() and ack.exception() is not None:
            log.warning("heartbeat of %s failed: %r", self.instance_id, ack.exception())

    async def _read(self) -> None:
        assert self._consumer is not None
        own = self.instance_id.encode()
        while True:
            batches = await self._consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for r in records:
                    if r.key == own and r.value is not None:
                        await self._dispatch(r.value)

    async def _dispatch(self, value: bytes) -> None:
        try:
            record = decode_control(value)
        except MalformedRecord as e:
            log.warning("dropping malformed control record: %s", e)
            return
        if isinstance(record, Reply):
            fut = self._pending.get(record.request_id)
            if fut is not None and not fut.done():
                fut.set_result(record)
            return
        callback: Any
        if isinstance(record, Kick):
            if record.connection_id in self._connecting:
                self._connecting[record.connection_id] = record  # connect() refuses instead
                return
            callback = self.on_kick
        elif isinstance(record, DeliverCommand):
            callback = self.on_command
        else:
            callback = self.on_outcome
        if callback is None:
            if isinstance(record, DeliverCommand):
                await self.command_outcome(record, False, "endpoint cannot deliver commands")
            return
        try:
            result = callback(record)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("state client callback failed for %r", record)


#: topics keyed by device: one partition count for all (a worker owns partition n of each)
_DEVICE_KEYED = (names.DEVICE_STATE, names.REGISTRY, names.COMMANDS)


def _copartitioning(actual: dict[str, int]) -> list[str]:
    counts = {topic: actual[topic] for topic in _DEVICE_KEYED if topic in actual}
    if len(set(counts.values())) <= 1:
        return []
    listed = ", ".join(f"{topic!r} {n}" for topic, n in counts.items())
    return [f"device-keyed topics differ in partitions ({listed}; one was auto-created by the broker?) — "
            f"they must be equal: fix them and run `kedge topology apply`"]


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
