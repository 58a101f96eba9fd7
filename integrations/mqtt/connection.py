"""One application connection to the MQTT integration: an ``asyncio.Protocol`` around the sans-I/O
:class:`~protocols.mqtt.ServerSession` (reference §6), over TCP, TLS or WebSocket (:mod:`.websocket`).

* CONNECT: :func:`integrations.mqtt.login.login` (0x86 wrong credentials, 0x88 user store unavailable). Clean
  session required (else MQTT 5 0x83, 3.1.1 2 identifier rejected). CONNACK (MQTT 5): wildcard and shared
  subscriptions and subscription identifiers available, retain not available; an empty client id gets one.
* SUBSCRIBE: :func:`integrations.mqtt.topics.parse_subscription`; Read on the app (denied -> 0x87, the app does
  not exist -> 0x80, more than ``mqtt_max_subscriptions`` -> 0x97); one
  :class:`~integrations.mqtt.subscription.Subscription` (Kafka consumer) per topic filter, in the group of
  :func:`integrations.mqtt.topics.consumer_group` (else ``anonymous.<uuid>``). Granted QoS: 0 stays 0, 1 and 2
  become 1. A topic filter subscribed again replaces its subscription. SUBSCRIBE and UNSUBSCRIBE change the
  subscriptions in packet order; the SUBACK waits (bounded) for the new consumers' first group join, so every
  event produced after it is delivered.
* PUBLISH: commands, :mod:`integrations.mqtt.commands`; PUBACKs in the order of the PUBLISHes; MQTT 5 carries
  the failure reason (3.1.1 has none: a failed command is acknowledged and logged, as in Drogue).
* A subscription that fails after it started (Kafka error, send error) closes the connection.
* Credentials are watched after CONNECT (:mod:`integrations.mqtt.expiry`): an expired JWT ends the connection
  (MQTT 5 DISCONNECT 0xA0), a deleted access token within ``token_check_interval_s`` (0x87); 3.1.1: close.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from integrations.auth import AuthError, AuthUnavailable, Caller
from integrations.mqtt.commands import CommandOutcome, PendingAck, PubackQueue
from integrations.mqtt.expiry import watch_credentials, watched
from integrations.mqtt.login import login
from integrations.mqtt.subscription import Subscription, SubscriptionSpec
from integrations.mqtt.topics import (
    CommandTopic,
    ContentMode,
    ContentModeInvalid,
    SubscriptionTopic,
    TopicRefused,
    consumer_group,
    content_mode,
    parse_command_topic,
    parse_subscription,
)
from kedge.mqtt_shell import SessionProtocol
from protocols.mqtt import (
    Connect,
    ConnectReceived,
    DisconnectReceived,
    Event,
    ProtocolVersion,
    ProtocolViolation,
    PubackReceived,
    Publish,
    PublishProperties,
    PublishReceived,
    ReasonCode,
    SessionError,
    State,
    SubscribeReceived,
    UnsubscribeReceived,
)
from protocols.mqtt import (
    Subscription as MqttSubscription,
)

if TYPE_CHECKING:
    from integrations.mqtt.server import MqttIntegration

log = logging.getLogger(__name__)

__all__ = ["IntegrationConnection"]

V5 = ProtocolVersion.V5


class IntegrationConnection(SessionProtocol):
    def __init__(self, server: MqttIntegration) -> None:
        super().__init__(server.session_config)
        self.server = server
        self.version: ProtocolVersion | None = None
        self.caller: Caller | None = None
        #: the client id the client chose (None: empty, assigned by us)
        self.client_id: str | None = None
        self.subscriptions: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}
        #: SUBSCRIBE and UNSUBSCRIBE change the subscriptions one at a time, in packet order
        self._control = asyncio.Lock()
        self._acks = PubackQueue()
        self._commands = 0
        self._connecting = False
        #: the watch of the CONNECT's credentials (a JWT's expiry, an access token's revocation)
        self._watch: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    # ------------------------------------------------------------------------------------ transport

    @property
    def v5(self) -> bool:
        return self.version == V5

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost()
        self.server.connections.discard(self)
        self.cancel_timer()
        self._stop_watch()
        self.transport = None
        self._writable.set()  # waiters see the closed transport
        for _, task in self.subscriptions.values():
            task.cancel()
        self.subscriptions.clear()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def _update_reading(self) -> None:
        self.set_reading_paused(self._connecting or self._commands >= self.server.max_pending_commands)

    def shutdown(self) -> None:
        """The server stops: MQTT 5 DISCONNECT 0x8B, then close."""
        self._stop_watch()
        if self.session.state is State.CONNECTED:
            self.session.disconnect(ReasonCode.SERVER_SHUTTING_DOWN)
        self.close()

    def _stop_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    # ------------------------------------------------------------------------------------ the outlet

    def window_free(self) -> bool:
        return self.session.inflight_available > 0

    async def writable(self) -> None:
        await self._writable.wait()
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed")

    def publish(self, topic: str, payload: bytes, qos: int, properties: PublishProperties) -> int | None:
        packet_id = self.session.publish(topic, payload, qos, properties=properties)
        self.flush()
        return packet_id

    # ------------------------------------------------------------------------------------ events

    def handle_events(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is PubackReceived:
                self._on_puback(event.packet_id)
            elif type(event) is PublishReceived:
                self._on_publish(event.publish)
            elif type(event) is SubscribeReceived:
                self._spawn(self._subscribe(event))
            elif type(event) is UnsubscribeReceived:
                self._spawn(self._unsubscribe(event))
            elif type(event) is ConnectReceived:
                self._connecting = True
                self._update_reading()
                self._spawn(self._connect(event))
            elif type(event) is DisconnectReceived:
                self.close()
            elif type(event) is ProtocolViolation:
                log.debug("protocol violation by %s: %s", self.client_id, event.message)
                self.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.server.spawn(coro)

    def _on_puback(self, packet_id: int) -> None:
        subs = [sub for sub, _ in self.subscriptions.values()]
        for sub in subs:
            if sub.owns(packet_id):
                sub.on_puback(packet_id)
                break
        for sub in subs:  # a slot of the connection's window is free
            sub.wake()

    # ------------------------------------------------------------------------------------ connect

    async def _connect(self, event: ConnectReceived) -> None:
        self.version = event.version
        try:
            code = await self._authenticate(event)
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
        assigned = None
        if not event.connect.client_id and self.v5:
            assigned = f"kedge-{uuid.uuid4()}"
        events = self.session.connack(
            assigned_client_identifier=assigned, wildcard_subscription_available=True,
            shared_subscription_available=True, subscription_identifiers_available=True, now=self.loop.time(),
        )
        self.handle_events(events)
        self.flush()
        self._update_reading()
        caller = self.caller
        if caller is not None and watched(event.connect, caller):
            self._watch = asyncio.create_task(self._watch_credentials(event.connect, caller),
                                              name=f"mqtt-credentials-{self.client_id}")

    async def _watch_credentials(self, connect: Connect, caller: Caller) -> None:
        def refreshed(new: Caller) -> None:
            self.caller = new

        try:
            ending = await watch_credentials(self.server.access, connect, caller,
                                             self.server.settings.token_check_interval_s, refreshed=refreshed)
            reason, message = ending.reason, ending.message
        except Exception:  # fail closed: a connection whose credentials cannot be watched does not stay
            log.exception("watching the credentials of %s failed; closing the connection", self.client_id)
            reason, message = ReasonCode.UNSPECIFIED_ERROR, "internal error"
        self._watch = None
        if self.session.state is not State.CONNECTED:
            return
        log.info("ending the connection of %s: %s", self.client_id or "(assigned id)", message)
        self.session.disconnect(reason, reason_string=message)  # 3.1.1: nothing is sent, the socket closes
        self.close()

    async def _authenticate(self, event: ConnectReceived) -> ReasonCode:
        if event.persistent_session:
            return ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if self.v5 else ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
        result = await login(self.server.access, event.connect)
        if isinstance(result, ReasonCode):
            return result
        self.caller = result
        self.client_id = event.connect.client_id or None
        return ReasonCode.SUCCESS

    # ------------------------------------------------------------------------------------ subscribe

    async def _subscribe(self, event: SubscribeReceived) -> None:
        """Check and register each filter in packet order (under the control lock, with UNSUBSCRIBE), then
        wait for the new consumers' first group join outside it and answer."""
        sub = event.subscribe
        props = sub.properties.user_properties if self.v5 else ()
        try:
            mode = content_mode(props)
        except ContentModeInvalid as e:
            self.session.suback(sub.packet_id, [ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR] * len(sub.subscriptions),
                                str(e))
            self.flush()
            return
        sub_id = sub.properties.subscription_identifier if self.v5 else None
        async with self._control:
            started = [await self._start_subscription(s, props, mode, sub_id) for s in sub.subscriptions]
        results = await asyncio.gather(*(self._granted(r) if isinstance(r, Subscription) else _done(r)
                                         for r in started))
        codes = [code for code, _ in results]
        problems = [problem for _, problem in results if problem]
        self.session.suback(sub.packet_id, codes, "; ".join(problems) or None)
        self.flush()

    async def _start_subscription(self, s: MqttSubscription, props: tuple[tuple[str, str], ...], mode: ContentMode,
                                  sub_id: int | None) -> Subscription | tuple[ReasonCode, str | None]:
        """The running subscription of one topic filter, or why it is refused."""
        try:
            topic = parse_subscription(s.topic_filter, props)
        except TopicRefused as e:
            return e.reason, e.message
        caller = self.caller
        assert caller is not None
        try:
            allowed = await self.server.access.may(topic.app, caller, "Read")
        except (AuthUnavailable, AuthError) as e:
            return ReasonCode.UNSPECIFIED_ERROR, f"cannot check the permission: {e}"
        if allowed is None:
            return ReasonCode.UNSPECIFIED_ERROR, f"application {topic.app!r} not found"
        if not allowed:
            return ReasonCode.NOT_AUTHORIZED, f"not authorized: Read on application {topic.app!r}"
        if self.session.state is not State.CONNECTED:
            return ReasonCode.UNSPECIFIED_ERROR, "connection closed"
        limit = self.server.settings.mqtt_max_subscriptions
        if s.topic_filter not in self.subscriptions and len(self.subscriptions) >= limit:
            return ReasonCode.QUOTA_EXCEEDED, f"at most {limit} subscriptions per connection"
        spec = self._spec(topic, 0 if s.qos == 0 else 1, mode, sub_id)
        old = self.subscriptions.pop(s.topic_filter, None)
        if old is not None:
            old[1].cancel()
        subscription = Subscription(self, spec, self.server.settings, self.server.kafka_settings)
        task = asyncio.create_task(self._run(s.topic_filter, subscription), name=f"mqtt-sub-{spec.group_id}")
        task.add_done_callback(lambda _: subscription.ended())
        self.subscriptions[s.topic_filter] = (subscription, task)
        return subscription

    async def _granted(self, subscription: Subscription) -> tuple[ReasonCode, str | None]:
        spec = subscription.spec
        try:
            reason = await asyncio.wait_for(asyncio.shield(subscription.ready), self.server.subscribe_timeout_s)
        except TimeoutError:
            log.warning("subscription %s (group %s): no group join within %ss, granted anyway",
                        spec.publish_topic, spec.group_id, self.server.subscribe_timeout_s)
            reason = ReasonCode.SUCCESS
        granted = ReasonCode.GRANTED_QOS_1 if spec.qos else ReasonCode.GRANTED_QOS_0
        if reason is not ReasonCode.SUCCESS:
            found = [f for f, (sub, _) in self.subscriptions.items() if sub is subscription]
            if not found:
                return granted, None  # unsubscribed or replaced meanwhile, by a later packet
            self.subscriptions.pop(found[0])[1].cancel()
            return reason, f"the event stream of application {spec.app!r} is not available"
        subscription.granted = True
        log.info("subscribed %s to %s (group %s, qos %d, %s, filter %s)", self.client_id, spec.publish_topic,
                 spec.group_id, spec.qos, spec.mode.value, spec.filter.describe())
        return granted, None

    def _spec(self, topic: SubscriptionTopic, qos: int, mode: ContentMode, sub_id: int | None) -> SubscriptionSpec:
        group = consumer_group(topic, self.client_id)
        return SubscriptionSpec(
            app=topic.app, filter=topic.filter, publish_topic=topic.publish_topic, qos=qos, mode=mode,
            group_id=group if group is not None else f"anonymous.{uuid.uuid4()}", anonymous=group is None,
            subscription_id=sub_id,
        )

    async def _run(self, topic_filter: str, subscription: Subscription) -> None:
        try:
            await subscription.run()
        except (SessionError, ConnectionError):
            return  # the connection is closed already
        except Exception:
            log.exception("subscription %s of %s failed; closing the connection", topic_filter, self.client_id)
            self.close()
            return
        if subscription.granted:  # it ended by itself (Kafka failure) after the SUBACK granted it
            log.warning("subscription %s of %s ended; closing the connection", topic_filter, self.client_id)
            self.close()

    async def _unsubscribe(self, event: UnsubscribeReceived) -> None:
        unsub = event.unsubscribe
        codes: list[ReasonCode] = []
        async with self._control:
            for topic_filter in unsub.topic_filters:
                found = self.subscriptions.pop(topic_filter, None)
                if found is None:
                    codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
                else:
                    found[1].cancel()  # no PUBLISH of it after this point; its consumer commits and leaves
                    codes.append(ReasonCode.SUCCESS)
        self.session.unsuback(unsub.packet_id, codes if self.v5 else ())
        self.flush()

    # ------------------------------------------------------------------------------------ commands

    def _on_publish(self, publish: Publish) -> None:
        ack = self._acks.expect(publish.packet_id) if publish.qos == 1 and publish.packet_id is not None else None
        try:
            topic = parse_command_topic(publish.topic)
        except TopicRefused as e:
            self._done(ack, CommandOutcome(e.reason, e.message))
            return
        self._commands += 1
        self._update_reading()
        self._spawn(self._command(topic, publish.payload, ack))

    async def _command(self, topic: CommandTopic, payload: bytes, ack: PendingAck | None) -> None:
        caller = self.caller
        assert caller is not None
        try:
            outcome = await self.server.commands.send(caller, topic, payload)
        except Exception:
            log.exception("command %r for %s/%s failed", topic.command, topic.app, topic.device)
            outcome = CommandOutcome(ReasonCode.UNSPECIFIED_ERROR, "internal error")
        finally:
            self._commands -= 1
            self._update_reading()
        if outcome.reason is not ReasonCode.SUCCESS:
            log.info("command %r for %s/%s refused (0x%02X): %s", topic.command, topic.app, topic.device,
                     outcome.reason, outcome.message)
        self._done(ack, outcome)

    def _done(self, ack: PendingAck | None, outcome: CommandOutcome) -> None:
        """Record a QoS 1 outcome and send every PUBACK now due, in order (3.1.1: always success)."""
        if ack is None:
            return
        for packet_id, due in self._acks.done(ack, outcome):
            if self.v5:
                self.session.puback(packet_id, due.reason, due.message if due.reason else None)
            else:
                self.session.puback(packet_id)
        self.flush()


async def _done(result: tuple[ReasonCode, str | None]) -> tuple[ReasonCode, str | None]:
    return result
