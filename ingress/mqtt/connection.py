"""One MQTT device connection: an ``asyncio.Protocol`` that moves bytes into the sans-I/O
:class:`~protocols.mqtt.ServerSession` and writes what it returns; the decisions live in the session, the
dialect (:mod:`ingress.mqtt.topics`) and here only as far as they need I/O (authentication, the device-state
agent, Kafka).

Invariants:

* CONNACK only after the device-state agent accepted the connection (reference §4, DESIGN.md); reading is
  paused meanwhile.
* A QoS 1 PUBLISH is acknowledged only after Kafka acknowledged its event, and PUBACKs go out in the order
  the PUBLISHes came in. On MQTT 3.1.1 (no negative PUBACK) a failed publish closes the connection instead of
  being acknowledged.
* While ``max_pending`` QoS 1 publishes of this connection wait for Kafka, the socket is not read.
* QoS 0 back-pressure drops nothing that was read: when the publisher's backlog is full, the packets already
  decoded from the same read are held, in order, and handled once it has room again; reading resumes after.
* Every accepted connection is ended towards the agent exactly once, except after a kick (the agent already
  ended it).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from ingress.mqtt.admission import admit
from ingress.mqtt.cache import TtlLru
from ingress.mqtt.topics import DROGUE_V1, Dialect, Subscriptions, Target, TopicInvalid
from ingress.publish import PublishError, QueueFull
from kedge.mqtt_shell import SessionProtocol
from protocols.mqtt import (
    ConnectReceived,
    DisconnectReceived,
    Event,
    PacketTooLargeForClient,
    ProtocolVersion,
    ProtocolViolation,
    Publish,
    PublishProperties,
    PublishReceived,
    ReasonCode,
    SessionError,
    State,
    SubscribeReceived,
    UnsubscribeReceived,
)
from protocols.mqtt.properties import EMPTY_PUBLISH
from schemas.auth import AuthUnavailable, DeviceIdentity
from schemas.events import DeviceEventTemplate, PayloadRejected
from schemas.state import DeliverCommand, Reason

if TYPE_CHECKING:
    from ingress.mqtt.endpoint import MqttEndpoint

__all__ = ["MqttConnection", "kick_reason_code"]

log = logging.getLogger(__name__)

V5 = ProtocolVersion.V5
#: a cached "not allowed" answer of authorize_as
_DENIED = DeviceIdentity(app="", app_uid="", device="", device_uid="")

_KICK_CODES = {
    Reason.TAKEN_OVER: ReasonCode.SESSION_TAKEN_OVER,
    Reason.DEVICE_DISABLED: ReasonCode.NOT_AUTHORIZED,
    Reason.APP_DISABLED: ReasonCode.NOT_AUTHORIZED,
}


def kick_reason_code(reason: Reason) -> ReasonCode:
    """The MQTT 5 DISCONNECT reason of a kick: 0x8E taken over, 0x87 disabled, else 0x98 administrative."""
    return _KICK_CODES.get(reason, ReasonCode.ADMINISTRATIVE_ACTION)


#: at most this many topics' targets are remembered per connection (a device uses a handful)
_TARGETS_CACHED = 64


class _Ack:
    """One QoS 1 PUBLISH waiting for its outcome; ``reason`` None while pending. It is the publisher's
    ``done`` callback of its event (:meth:`ingress.publish.Publisher.publish_then`)."""

    __slots__ = ("conn", "packet_id", "reason", "started")

    def __init__(self, conn: MqttConnection, packet_id: int) -> None:
        self.conn = conn
        self.packet_id = packet_id
        self.reason: ReasonCode | None = None
        self.started = time.perf_counter()

    def __call__(self, exc: BaseException | None) -> None:
        self.conn._acked(self, exc)


class MqttConnection(SessionProtocol):
    # Class-level defaults: an idle connection pays nothing for these until it first needs them (RSS per idle
    # connection is a target). Decoded packets waiting for the publisher's room (QoS 0 back-pressure), in order:
    _held: deque[Event] | None = None
    # The hot path's caches, made at the first PUBLISH: topic -> target, and the event templates (own device:
    # ``None`` key; proxied devices: ``(device, device_uid)``).
    _targets: dict[str, Target] | None = None
    _templates: dict[tuple[str, str] | None, DeviceEventTemplate] | None = None

    def __init__(self, endpoint: MqttEndpoint) -> None:
        super().__init__(endpoint.session_config)
        self.ep = endpoint
        self.version: ProtocolVersion | None = None
        self.identity: DeviceIdentity | None = None
        self.connection_id: str | None = None
        self.dialect: Dialect = DROGUE_V1
        self.subscriptions = Subscriptions()
        #: the agent accepted this connection: it must be told when it ends
        self.accepted = False
        #: the end is decided (and, if accepted, reported or being reported)
        self.ended = False
        #: the agent ended it (kick): no disconnect request of ours
        self.kicked = False
        self._connecting = False
        #: the publisher's best-effort backlog is full: reading waits until it has room again
        self._sink_full = False
        self._acks: deque[_Ack] = deque()
        self._as_cache: TtlLru[str, DeviceIdentity] = TtlLru(endpoint.as_cache_size, endpoint.as_cache_ttl_s)

    # ------------------------------------------------------------------------------------------ transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timer()
        self._end(Reason.NORMAL, skip_will=False)
        self.transport = None

    def _update_reading(self) -> None:
        self.set_reading_paused(self._connecting or self._sink_full or len(self._acks) >= self.ep.max_pending)

    # ------------------------------------------------------------------------------------------ events

    def handle_events(self, events: list[Event]) -> None:
        if self._held is not None:  # earlier packets wait for the publisher: keep the order
            self._held.extend(events)
            return
        for i, event in enumerate(events):
            self._handle(event)
            if self._sink_full and i + 1 < len(events):
                self._held = deque(events[i + 1:])
                return

    def _handle(self, event: Event) -> None:
        if type(event) is PublishReceived:
            self._on_publish(event.publish)
        elif type(event) is ConnectReceived:
            self._connecting = True
            self._update_reading()
            self.ep.spawn(self._connect(event))
        elif type(event) is SubscribeReceived:
            self._on_subscribe(event)
        elif type(event) is UnsubscribeReceived:
            self._on_unsubscribe(event)
        elif type(event) is DisconnectReceived:
            self._end(Reason.NORMAL, skip_will=not event.publish_will)
            self.close()
        elif type(event) is ProtocolViolation:
            log.debug("protocol violation on %s: %s", self.connection_id, event.message)
            timeout = event.reason is ReasonCode.KEEP_ALIVE_TIMEOUT
            self._end(Reason.KEEPALIVE_TIMEOUT if timeout else Reason.ERROR, skip_will=False)
            self.close()

    # ------------------------------------------------------------------------------------------ connect

    async def _connect(self, event: ConnectReceived) -> None:
        self.version = event.version
        try:
            code = await admit(self, event)
        except Exception:
            log.exception("connect failed")
            code = ReasonCode.SERVER_UNAVAILABLE
        if self.session.state is not State.AWAIT_CONNACK:
            return
        self._connecting = False
        if code is not ReasonCode.SUCCESS:
            self.session.connack(code)
            self.close()
            return
        events = self.session.connack(
            wildcard_subscription_available=True, shared_subscription_available=False,
            subscription_identifiers_available=False, now=self.loop.time(),
        )
        self.ep.connection_opened(self)
        self.handle_events(events)
        self.flush()
        self._update_reading()


    # ------------------------------------------------------------------------------------------ end

    def _end(self, reason: Reason, *, skip_will: bool) -> None:
        if self.ended:
            return
        self.ended = True
        self.ep.unregister(self)
        if self.accepted:
            self.ep.connection_closed(self)
            identity, cid = self.identity, self.connection_id
            assert identity is not None and cid is not None
            if not self.kicked:
                self.ep.spawn(self.ep.state.disconnect(identity.app, identity.device, cid, reason, skip_will))

    def kick(self, reason: Reason) -> None:
        """The agent ended this connection: close it (MQTT 5 DISCONNECT with :func:`kick_reason_code`)."""
        if self.ended:
            return
        self.kicked = True
        if self.session.state is State.CONNECTED:
            self.session.disconnect(kick_reason_code(reason))
        self._end(reason, skip_will=False)
        self.close()

    def shutdown(self) -> None:
        """The endpoint stops: MQTT 5 DISCONNECT 0x8B, close, and tell the agent (the Will applies)."""
        if self.session.state is State.CONNECTED:
            self.session.disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
        self._end(Reason.NORMAL, skip_will=False)
        self.close()

    # ------------------------------------------------------------------------------------------ publish

    def _on_publish(self, publish: Publish) -> None:
        ack = None
        if publish.qos == 1 and publish.packet_id is not None:
            ack = _Ack(self, publish.packet_id)
            self._acks.append(ack)
            if len(self._acks) >= self.ep.max_pending:
                self._update_reading()
        identity = self.identity
        assert identity is not None
        targets = self._targets
        if targets is None:
            targets = self._targets = {}
        target = targets.get(publish.topic)
        if target is None:
            try:
                target = self.dialect.target(publish.topic)
            except TopicInvalid:
                self._done(ack, ReasonCode.TOPIC_NAME_INVALID)
                return
            if len(targets) >= _TARGETS_CACHED:
                targets.clear()
            targets[publish.topic] = target
        origin: DeviceIdentity | None = identity
        if target.device is not None and target.device != identity.device:
            origin = self._as_cache.get(target.device, self.loop.time())
            if origin is _DENIED:
                self.ep.metrics.auth_failure("as_refused")
                self._done(ack, ReasonCode.NOT_AUTHORIZED)
                return
            if origin is None:
                self.ep.spawn(self._publish_as(publish, target.channel, target.device, ack))
                return
        self._publish(publish, target.channel, origin, ack)

    async def _publish_as(self, publish: Publish, channel: str, device: str, ack: _Ack | None) -> None:
        identity = self.identity
        assert identity is not None
        try:
            result = await self.ep.authenticator.authorize_as(identity, device)
        except AuthUnavailable as exc:
            log.warning("device registry unavailable: %s", exc)
            self._done(ack, ReasonCode.UNSPECIFIED_ERROR)
            return
        origin = result.identity if result.ok and result.identity is not None else _DENIED
        self._as_cache.put(device, origin, self.loop.time())
        if origin is _DENIED:
            self.ep.metrics.auth_failure("as_refused")
            self._done(ack, ReasonCode.NOT_AUTHORIZED)
            return
        self._publish(publish, channel, origin, ack)

    def _template(self, origin: DeviceIdentity) -> DeviceEventTemplate:
        """The event template of ``origin`` (the connected device or one it publishes for), made once."""
        sender = self.identity
        assert sender is not None
        templates = self._templates
        if templates is None:
            templates = self._templates = {}
        key = None if origin is sender else (origin.device, origin.device_uid)
        template = templates.get(key)
        if template is None:
            if len(templates) > self.ep.as_cache_size:
                templates.clear()
            template = templates[key] = DeviceEventTemplate(
                app=sender.app, app_uid=sender.app_uid, device=origin.device, device_uid=origin.device_uid,
                sender=sender.device, sender_uid=sender.device_uid, instance=self.ep.instance,
            )
        return template

    def _publish(self, publish: Publish, channel: str, origin: DeviceIdentity | None, ack: _Ack | None) -> None:
        sender = self.identity
        assert sender is not None and origin is not None
        try:
            event = self._template(origin).event(channel, publish.payload, publish.properties.content_type)
        except PayloadRejected:
            self.ep.metrics.outcome("rejected")
            self._done(ack, ReasonCode.UNSPECIFIED_ERROR)
            return
        sink = self.ep.sink
        if ack is None:
            try:
                sink.publish_nowait(event, topic_ready=sender.topic_ready)
            except PublishError as exc:
                log.debug("QoS 0 publish dropped: %s", exc)
            if sink.saturated and not self._sink_full:  # QoS 0 back-pressure: stop reading, don't drop
                self._sink_full = True
                self._update_reading()
                self.ep.spawn(self._resume_when_sink_has_room())
            return
        try:
            sink.publish_then(event, ack, topic_ready=sender.topic_ready)
        except Exception as exc:  # refused at once (queue full, not ready, not connected)
            self._acked(ack, exc)

    async def _resume_when_sink_has_room(self) -> None:
        await self.ep.sink.wait_room()
        self._sink_full = False
        held = self._held
        if held is not None:
            while held and not self._sink_full:
                self._handle(held.popleft())
            if not held:  # else the publisher filled up again: the resume that spawned goes on with the rest
                self._held = None
            self.flush()
        self._update_reading()

    def _acked(self, ack: _Ack, exc: BaseException | None) -> None:
        """The publisher's outcome of a QoS 1 event (:meth:`_Ack.__call__`) -> its PUBACK reason."""
        if exc is None:
            self.ep.metrics.latency.observe(time.perf_counter() - ack.started)
            self._done(ack, ReasonCode.SUCCESS)
        elif isinstance(exc, QueueFull):
            self._done(ack, ReasonCode.QUOTA_EXCEEDED)
        elif isinstance(exc, PublishError):
            log.warning("publish failed: %s", exc)
            self._done(ack, ReasonCode.UNSPECIFIED_ERROR)
        else:
            self.ep.metrics.outcome("error")
            log.error("publish failed", exc_info=exc)
            self._done(ack, ReasonCode.UNSPECIFIED_ERROR)

    def _done(self, ack: _Ack | None, reason: ReasonCode) -> None:
        """Record a QoS 1 outcome and send every PUBACK that is now due, in order."""
        if ack is None:
            return
        ack.reason = reason
        acks = self._acks
        while acks and acks[0].reason is not None:
            head = acks.popleft()
            assert head.reason is not None
            if head.reason is not ReasonCode.SUCCESS and self.version != V5:
                # MQTT 3.1.1 has no negative PUBACK: never acknowledge a failed publish, close instead
                self._acks.clear()
                self._end(Reason.ERROR, skip_will=False)
                self.session.disconnect()
                self.close()
                return
            self.session.puback(head.packet_id, head.reason)
        self.ep.flush_soon(self)  # every PUBACK due in this loop iteration in one write

    def flush_acks(self) -> None:
        """Write the PUBACKs queued by :meth:`_done` (called once per loop iteration by the endpoint)."""
        self.flush()
        self._update_reading()

    # ------------------------------------------------------------------------------------------ commands

    def _on_subscribe(self, event: SubscribeReceived) -> None:
        sub = event.subscribe
        if self.version == V5 and sub.properties.subscription_identifier is not None:
            codes = [ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED] * len(sub.subscriptions)
        else:
            codes = [ReasonCode.GRANTED_QOS_0 if self.subscriptions.add(s.topic_filter)
                     else ReasonCode.UNSPECIFIED_ERROR for s in sub.subscriptions]
        self.session.suback(sub.packet_id, codes)

    def _on_unsubscribe(self, event: UnsubscribeReceived) -> None:
        unsub = event.unsubscribe
        codes = [ReasonCode.SUCCESS if self.subscriptions.remove(f) else ReasonCode.NO_SUBSCRIPTION_EXISTED
                 for f in unsub.topic_filters]
        self.session.unsuback(unsub.packet_id, codes if self.version == V5 else ())

    def deliver(self, command: DeliverCommand) -> str | None:
        """Publish ``command`` to the device (QoS 0); None when sent, else why not."""
        identity = self.identity
        if self.session.state is not State.CONNECTED or identity is None or self.ended:
            return "connection closed"
        topic = self.subscriptions.command_topic(identity.device, command.device, command.command)
        if topic is None:
            return "device is not subscribed to commands"
        props = EMPTY_PUBLISH
        if self.version == V5 and command.content_type:
            props = PublishProperties(content_type=command.content_type)
        try:
            self.session.publish(topic, command.payload, 0, properties=props)
        except PacketTooLargeForClient:
            return "command too large for the device"
        except SessionError:
            return "connection closed"
        self.flush()
        return None
