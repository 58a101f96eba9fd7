"""One WebSocket session: the app's Kafka stream out, the client's token refreshes in (reference §10).

Three tasks per connection; the first to end ends the session:

* **stream**: reads ``events-<app>`` (a consumer in ``group_id``, or an ``anonymous.<uuid>`` group), sends every
  event that passes the filter as one text frame (structured CloudEvent). Records are examined one at a time
  and a record counts as done only once it was sent (or filtered out, or was malformed); only done offsets are
  committed (every ``commit_interval_s``, when partitions are revoked, and at the end). Kafka fetches ahead by
  at most its own bounded buffers, and ``send`` waits while the socket's write buffer is full, so a slow client
  slows the stream down instead of filling memory.
* **client**: ``{"RefreshAccessToken": "<jwt>"}`` replaces the expiry; anything else closes with 1002.
* **expiry**: every ``token_check_interval_s``, a session opened with a JWT past its ``exp`` closes with 1008;
  one opened with an access token is authenticated again (``recheck``) and closes with 1008 once the token or
  its user is gone or may no longer read the app (while the user store cannot be asked, it stays).

Pings (every ``ping_interval_s``, close when no pong within ``ping_timeout_s``) are the server library's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from integrations.auth import AuthError, AuthUnavailable, Caller, UserAccess
from integrations.filters import EventFilter
from integrations.ws.protocol import (
    CLOSE_INTERNAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
    EXPIRED,
    REFRESH_DENIED,
    REVOKED,
    ProtocolError,
    close_reason,
    parse_client_message,
)
from kedge import kafka
from kedge.groups import stop_consumer
from kedge.offsets import end_offsets
from kedge.settings import IntegrationSettings, KafkaSettings
from schemas.binding import from_kafka
from schemas.events import MalformedEvent
from schemas.structured import to_structured
from topology.names import app_topic

log = logging.getLogger(__name__)

#: records handed over by one fetch; each is examined and sent before the next fetch
FETCH_RECORDS = 64


@dataclass
class SessionSpec:
    """What the handshake decided: the app, who is asking, the consumer group and the filter."""

    app: str
    caller: Caller
    group_id: str
    anonymous_group: bool
    filter: EventFilter
    #: authenticates the handshake's credentials again (an access-token session), None: nothing to re-check
    recheck: Callable[[], Awaitable[Caller]] | None = None
    exp: int | None = field(init=False)

    def __post_init__(self) -> None:
        self.exp = self.caller.exp


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Revoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, session: Session) -> None:
        self.session = session

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.session.commit(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.debug("ws session %s assigned %s", self.session.spec.group_id, sorted(assigned))


class Session:
    def __init__(self, ws: ServerConnection, spec: SessionSpec, access: UserAccess,
                 integration: IntegrationSettings, kafka_settings: KafkaSettings) -> None:
        self.ws = ws
        self.spec = spec
        self.access = access
        self.settings = integration
        self.kafka_settings = kafka_settings
        self.consumer: AIOKafkaConsumer | None = None
        #: per partition, the offset after the last examined record (what may be committed)
        self.done: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._stream(), name="ws-stream"),
                 asyncio.create_task(self._client(), name="ws-client"),
                 asyncio.create_task(self._expiry(), name="ws-expiry")]
        close: _Close | None = None
        try:
            finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                exc = task.exception()
                if isinstance(exc, _Close):
                    close = exc
                elif exc is not None and not isinstance(exc, ConnectionClosed):
                    log.exception("ws session of %s failed", self.spec.app, exc_info=exc)
                    close = _Close(CLOSE_INTERNAL, f"internal error: {exc}")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            try:
                if close is not None:  # what was examined is fixed now: tell the client first, then commit
                    with contextlib.suppress(Exception):
                        await self.ws.close(close.code, close_reason(close.reason))
            finally:
                await self._stop_consumer()

    # ---------------------------------------------------------------------------------------- kafka -> ws

    async def _stream(self) -> None:
        topic = app_topic(self.spec.app)
        consumer = kafka.consumer(
            self.kafka_settings, group_id=self.spec.group_id, enable_auto_commit=False,
            auto_offset_reset="latest", client_id=f"{self.kafka_settings.client_id}-ws",
            session_timeout_ms=int(self.settings.consumer_session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.settings.consumer_heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(self.settings.consumer_rebalance_timeout_s * 1000), fetch_max_wait_ms=100,
        )
        self.consumer = consumer
        try:
            await consumer.start()
            if topic not in await consumer.topics():
                raise _Close(CLOSE_INTERNAL, f"the event stream of application {self.spec.app!r} does not exist")
            consumer.subscribe([topic], listener=_Revoke(self))
        except KafkaError as e:
            raise _Close(CLOSE_INTERNAL, f"Kafka unavailable: {e}") from e
        flt = self.spec.filter
        send = self.ws.send
        last_commit = time.monotonic()
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000, max_records=FETCH_RECORDS)
            except KafkaError as e:
                raise _Close(CLOSE_INTERNAL, f"Kafka error: {e}") from e
            await self._adopt_new_partitions(consumer, batches)
            for tp, records in batches.items():
                if tp not in self.done:  # revoked meanwhile: its new owner reads these records
                    continue
                start = self.done[tp]
                for r in records:
                    if r.offset < start:  # fetched from before the start position (see _adopt_new_partitions)
                        continue
                    try:
                        event = from_kafka(r.key, r.value, r.headers)
                    except MalformedEvent as e:
                        log.warning("skipping malformed record %s@%d: %s", tp, r.offset, e)
                    else:
                        if flt.matches(event):
                            await send(to_structured(event), text=True)
                    if tp not in self.done:  # revoked while sending
                        break
                    self.done[tp] = r.offset + 1
            if time.monotonic() - last_commit >= self.settings.ws_commit_interval_s:
                await self.commit()
                last_commit = time.monotonic()

    async def _adopt_new_partitions(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, Any]) -> None:
        """Fix the start of partitions assigned since the last fetch, and remember it as done.

        A partition without a committed offset starts at its true end (``auto_offset_reset=latest``, with
        the end taken from :func:`topology.highwater.end_offsets`: the embedded broker's ListOffsets may
        answer too early). The start is committed at once for a named group, so events produced while no
        client is connected are delivered at the next connect even on partitions this session never read.
        """
        new = [tp for tp in consumer.assignment() if tp not in self.done]
        if not new:
            return
        fresh: list[TopicPartition] = []
        for tp in new:
            committed = await consumer.committed(tp) if not self.spec.anonymous_group else None
            if committed is None:
                fresh.append(tp)
            else:
                self.done[tp] = committed
        if fresh:
            ends = await end_offsets(consumer, fresh)
            for tp in fresh:
                position = await consumer.position(tp)
                start = max(ends.get(tp, position), 0)
                if tp not in batches and position != start:
                    consumer.seek(tp, start)
                self.done[tp] = start
        await self.commit()

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        """Commit the examined offsets (of ``partitions``, default all) that are not committed yet."""
        consumer = self.consumer
        todo = {tp: off for tp, off in self.done.items()
                if (partitions is None or tp in partitions) and self.committed.get(tp) != off}
        if todo and consumer is not None and not self.spec.anonymous_group:
            try:
                await consumer.commit(todo)
                self.committed.update(todo)
            except (KafkaError, AssertionError, RuntimeError) as e:  # e.g. a rebalance in between
                log.warning("ws session %s: offsets %s not committed: %s", self.spec.group_id, todo, e)
        if partitions is not None:
            for tp in partitions:
                self.done.pop(tp, None)
                self.committed.pop(tp, None)

    async def _stop_consumer(self) -> None:
        consumer = self.consumer
        if consumer is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.commit(), 5.0)
        self.consumer = None
        with contextlib.suppress(Exception):
            await stop_consumer(consumer)

    # ---------------------------------------------------------------------------------------- ws -> server

    async def _client(self) -> None:
        async for message in self.ws:
            try:
                refresh = parse_client_message(message)
            except ProtocolError as e:
                raise _Close(CLOSE_PROTOCOL, str(e)) from None
            try:
                caller = await self.access.authenticate_jwt(refresh.token)
                allowed = await self.access.may(self.spec.app, caller, "Read")
            except AuthError as e:
                raise _Close(CLOSE_INTERNAL, f"{REFRESH_DENIED}: {e.message}") from None
            except AuthUnavailable as e:
                raise _Close(CLOSE_INTERNAL, f"{REFRESH_DENIED}: {e}") from None
            if not allowed:
                raise _Close(CLOSE_POLICY, REFRESH_DENIED)
            self.spec.exp = caller.exp
            log.debug("ws session of %s: token refreshed, exp %s", self.spec.app, caller.exp)

    async def _expiry(self) -> None:
        while True:
            await asyncio.sleep(self.settings.token_check_interval_s)
            exp = self.spec.exp
            if exp is not None and time.time() > exp:
                raise _Close(CLOSE_POLICY, EXPIRED)
            if exp is None and self.spec.recheck is not None:  # a JWT refresh replaces the access token
                await self._recheck(self.spec.recheck)

    async def _recheck(self, recheck: Callable[[], Awaitable[Caller]]) -> None:
        try:
            caller = await recheck()
            allowed = await self.access.may(self.spec.app, caller, "Read")
        except AuthError:
            raise _Close(CLOSE_POLICY, REVOKED) from None
        except AuthUnavailable as e:
            log.warning("ws session of %s: cannot re-check its access token now (%s); it stays", self.spec.app, e)
            return
        if not allowed:
            raise _Close(CLOSE_POLICY, REVOKED)
