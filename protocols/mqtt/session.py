"""The server side of one MQTT connection as a sans-I/O state machine.

The shell feeds it bytes (`receive`) and the clock (`poll`, `next_deadline`), acts on the events it
returns, calls the answer methods (`connack`, `puback`, `suback`, `unsuback`, `publish`, `disconnect`) and
writes `data_to_send()` to the transport after every call. Nothing here blocks, sleeps or reads a clock.

    session = ServerSession(config, now=loop.time())
    events = session.receive(data, loop.time())     # also: session.poll(loop.time()) at next_deadline()
    ...                                             # ConnectReceived -> session.connack(...), etc.
    transport.write(session.data_to_send())
    if session.closed: transport.close()

States: AWAIT_CONNECT -> (CONNECT) -> AWAIT_CONNACK -> (connack success) -> CONNECTED -> CLOSED; any
refusal, violation, timeout, DISCONNECT or `disconnect()` ends in CLOSED, after which input is ignored."""

from __future__ import annotations

from collections.abc import Sequence

from protocols.mqtt import events as ev
from protocols.mqtt import packets as pk
from protocols.mqtt.decoder import Decoder
from protocols.mqtt.encode import encode, encode_publish
from protocols.mqtt.properties import (
    EMPTY_ACK,
    EMPTY_DISCONNECT,
    EMPTY_PUBLISH,
    AckProperties,
    ConnackProperties,
    DisconnectProperties,
    PublishProperties,
    UserProperties,
)
from protocols.mqtt.reason import (
    CONNACK_REASONS,
    SERVER_DISCONNECT_REASONS,
    MqttProtocolError,
    ProtocolVersion,
    ReasonCode,
    to_v311_connack,
)
from protocols.mqtt.session_config import (
    InflightWindowFull,
    PacketTooLargeForClient,
    SessionConfig,
    SessionError,
    State,
)

V5 = ProtocolVersion.V5


class ServerSession:
    """One connection, server side. See the module docstring and each method."""

    def __init__(self, config: SessionConfig | None = None, *, now: float) -> None:
        self.config = config or SessionConfig()
        self.state = State.AWAIT_CONNECT
        self.version: ProtocolVersion | None = None
        self.connect: pk.Connect | None = None
        self._decoder = Decoder(None, self.config.max_packet_size, pause_after_connect=True)
        self._out = bytearray()
        self._now = now
        self._deadline: float | None = now + self.config.connect_timeout
        self._keepalive = 0.0
        self._aliases: dict[int, str] = {}
        self._incoming: set[int] = set()
        self._inflight: set[int] = set()
        self._inflight_limit = self.config.max_inflight
        self._next_id = 0
        self._unsubscribes: dict[int, int] = {}
        self._client_max_packet: int | None = None
        self._problem_info = True

    # -- input ----------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def receive(self, data: bytes, now: float) -> list[ev.Event]:
        """Bytes from the transport -> events. After a `DisconnectReceived` or `ProtocolViolation` the
        session is closed and ignores further bytes."""
        if self.state is State.CLOSED:
            return []
        self._now = now
        try:
            packets = self._decoder.feed(data)
        except MqttProtocolError as exc:
            return [self._violation(exc)]
        if not packets:
            return []
        if self.state is State.CONNECTED:
            self._deadline = now + self._keepalive if self._keepalive else None
            return self._dispatch(packets)
        # AWAIT_CONNECT: the decoder only yields a CONNECT here and pauses right after it
        connect = packets[0]
        assert isinstance(connect, pk.Connect)
        return [self._on_connect(connect)]

    def connection_lost(self) -> None:
        """The transport closed: the session is over (no event; the shell knows why)."""
        self._close()

    def poll(self, now: float) -> list[ev.Event]:
        """Advance the clock: a CONNECT or keep-alive timeout ends the session."""
        self._now = now
        if self._deadline is None or now < self._deadline or self.state is State.CLOSED:
            return []
        if self.state is State.AWAIT_CONNECT:
            self.state = State.CLOSED
            self._deadline = None
            return [ev.ProtocolViolation(ReasonCode.MAXIMUM_CONNECT_TIME, "no CONNECT in time")]
        return [self._violation(MqttProtocolError(ReasonCode.KEEP_ALIVE_TIMEOUT, "keep alive expired"))]

    def next_deadline(self) -> float | None:
        """When `poll` must be called next (None: no timer needed)."""
        return None if self.state is State.CLOSED else self._deadline

    def data_to_send(self) -> bytes:
        """Bytes queued for the transport since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded (e.g. while waiting to send CONNACK)."""
        return self._decoder.buffered

    def _on_connect(self, connect: pk.Connect) -> ev.Event:
        self.connect = connect
        self.version = version = ProtocolVersion(connect.protocol_level)
        self.state = State.AWAIT_CONNACK
        self._deadline = None
        props = connect.properties
        if version == V5:
            if props.receive_maximum is not None:
                self._inflight_limit = min(self._inflight_limit, props.receive_maximum)
            self._client_max_packet = props.maximum_packet_size
            self._problem_info = props.request_problem_information != 0
        persistent = not connect.clean_start or bool(props.session_expiry_interval)
        return ev.ConnectReceived(connect, version, persistent)

    def _dispatch(self, packets: list[pk.Packet]) -> list[ev.Event]:
        out = self._dispatch_packets(packets)
        error = self._decoder.error
        if error is not None and self.state is not State.CLOSED:
            out.append(self._violation(error))
        return out

    def _dispatch_packets(self, packets: list[pk.Packet]) -> list[ev.Event]:
        out: list[ev.Event] = []
        v5 = self.version == V5
        for packet in packets:
            if type(packet) is pk.Publish:
                if packet.qos == 0 and not v5 and not packet.retain:
                    out.append(ev.publish_received(packet))
                    continue
                event = self._on_publish(packet, v5)
            elif type(packet) is pk.PubAck:
                if packet.packet_id not in self._inflight:
                    continue
                self._inflight.discard(packet.packet_id)
                event = ev.PubackReceived(packet.packet_id, packet.reason_code)
            else:
                other = self._on_other(packet)
                if other is None:
                    continue
                event = other
            out.append(event)
            if type(event) is ev.ProtocolViolation or type(event) is ev.DisconnectReceived:
                break
        return out

    def _on_publish(self, packet: pk.Publish, v5: bool) -> ev.Event:
        if packet.qos == 2:
            return self._violation(MqttProtocolError(ReasonCode.QOS_NOT_SUPPORTED, "QoS 2 PUBLISH"))
        if not v5:
            return ev.publish_received(packet)
        if packet.retain and not self.config.retain_available:
            return self._violation(MqttProtocolError(ReasonCode.RETAIN_NOT_SUPPORTED, "retained PUBLISH"))
        if packet.properties.subscription_identifiers:
            return self._violation(
                MqttProtocolError(ReasonCode.PROTOCOL_ERROR, "subscription identifier in a client PUBLISH")
            )
        alias = packet.properties.topic_alias
        if alias is not None:
            if alias > self.config.topic_alias_maximum:
                return self._violation(
                    MqttProtocolError(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias} above maximum")
                )
            if packet.topic:
                self._aliases[alias] = packet.topic
            else:
                topic = self._aliases.get(alias)
                if topic is None:
                    return self._violation(MqttProtocolError(ReasonCode.PROTOCOL_ERROR, f"topic alias {alias} not set"))
                packet = pk.Publish(
                    topic,
                    packet.payload,
                    packet.qos,
                    packet.retain,
                    packet.dup,
                    packet.packet_id,
                    packet.properties,
                )
        if packet.qos == 1 and packet.packet_id not in self._incoming:
            self._incoming.add(packet.packet_id)  # type: ignore[arg-type]
            if len(self._incoming) > self.config.receive_maximum:
                return self._violation(
                    MqttProtocolError(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "too many unacknowledged PUBLISH")
                )
        return ev.publish_received(packet)

    def _on_other(self, packet: pk.Packet) -> ev.Event | None:
        match packet:
            case pk.Subscribe():
                return ev.SubscribeReceived(packet)
            case pk.Unsubscribe():
                self._unsubscribes[packet.packet_id] = len(packet.topic_filters)
                return ev.UnsubscribeReceived(packet)
            case pk.PingReq():
                self._out += b"\xd0\x00"
                return None
            case pk.Disconnect():
                expiry = packet.properties.session_expiry_interval
                assert self.connect is not None
                if expiry and not self.connect.properties.session_expiry_interval:
                    return self._violation(
                        MqttProtocolError(ReasonCode.PROTOCOL_ERROR, "session expiry set at DISCONNECT")
                    )
                self._close()
                return ev.DisconnectReceived(packet.reason_code, packet.properties)
            case pk.Auth():
                return self._violation(
                    MqttProtocolError(ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")
                )
        name = type(packet).__name__.upper()
        return self._violation(MqttProtocolError(ReasonCode.PROTOCOL_ERROR, f"unexpected {name} from a client"))

    def _violation(self, exc: MqttProtocolError) -> ev.ProtocolViolation:
        """Queue what the client should be told, close, and say why."""
        reason = exc.reason
        if self.state is State.AWAIT_CONNECT:
            if reason is ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
                level = exc.protocol_level or 0
                self._out += b"\x20\x03\x00\x84\x00" if level > 5 else b"\x20\x02\x00\x01"
        elif self.state is State.CONNECTED and self.version == V5:
            code = reason if reason in SERVER_DISCONNECT_REASONS else ReasonCode.PROTOCOL_ERROR
            self._out += encode(pk.Disconnect(code), V5)
        self._close()
        return ev.ProtocolViolation(reason, exc.message)

    def _close(self) -> None:
        self.state = State.CLOSED
        self._deadline = None

    # -- output ---------------------------------------------------------------------------------------

    def connack(
        self,
        reason: ReasonCode = ReasonCode.SUCCESS,
        *,
        session_present: bool = False,
        assigned_client_identifier: str | None = None,
        server_keep_alive: int | None = None,
        session_expiry_interval: int | None = None,
        wildcard_subscription_available: bool | None = None,
        subscription_identifiers_available: bool | None = None,
        shared_subscription_available: bool | None = None,
        reason_string: str | None = None,
        user_properties: UserProperties = (),
        now: float | None = None,
    ) -> list[ev.Event]:
        """Answer the CONNECT. Success starts the session (keep-alive from `now`) and returns the events of
        anything the client sent after its CONNECT meanwhile; a failure reason refuses it (3.1.1: the
        nearest return code) and closes the session. On MQTT 5 the server's limits from the config
        (Receive Maximum, Maximum QoS 1, Maximum Packet Size, Topic Alias Maximum, Retain Available) are
        always advertised. An MQTT 5 client that sent an empty client id must get an
        `assigned_client_identifier` (ValueError otherwise)."""
        if self.state is not State.AWAIT_CONNACK:
            raise SessionError(f"connack in state {self.state.value}")
        assert self.connect is not None and self.version is not None
        if now is not None:
            self._now = now
        if reason not in CONNACK_REASONS:
            raise ValueError(f"{reason.name} is not a CONNACK reason code")
        if reason.is_error:
            self._write_connack(reason, False, None)
            self._close()
            return []
        if self.version == V5 and not self.connect.client_id and assigned_client_identifier is None:
            raise ValueError("an empty client id needs an assigned_client_identifier in the CONNACK")
        cfg = self.config
        props = ConnackProperties(
            session_expiry_interval=session_expiry_interval,
            receive_maximum=cfg.receive_maximum if cfg.receive_maximum != 65535 else None,
            maximum_qos=1,
            retain_available=None if cfg.retain_available else 0,
            maximum_packet_size=cfg.max_packet_size,
            assigned_client_identifier=assigned_client_identifier,
            topic_alias_maximum=cfg.topic_alias_maximum or None,
            reason_string=reason_string if self._problem_info else None,
            user_properties=user_properties,
            wildcard_subscription_available=_flag(wildcard_subscription_available),
            subscription_identifiers_available=_flag(subscription_identifiers_available),
            shared_subscription_available=_flag(shared_subscription_available),
            server_keep_alive=server_keep_alive,
        )
        self._write_connack(reason, session_present, props)
        self.state = State.CONNECTED
        keepalive = self.connect.keepalive
        if server_keep_alive is not None and self.version == V5:
            keepalive = server_keep_alive
        self._keepalive = keepalive * cfg.keepalive_factor
        self._deadline = self._now + self._keepalive if keepalive else None
        try:
            packets = self._decoder.resume()
        except MqttProtocolError as exc:
            return [self._violation(exc)]
        return self._dispatch(packets) if packets else []

    def _write_connack(self, reason: ReasonCode, present: bool, props: ConnackProperties | None) -> None:
        if self.version == V5:
            packet = pk.Connack(reason, present, props or ConnackProperties())
        else:
            packet = pk.Connack(to_v311_connack(reason), present)
        self._out += encode(packet, self.version or 4)

    def puback(self, packet_id: int, reason: ReasonCode = ReasonCode.SUCCESS, reason_string: str | None = None) -> None:
        """Acknowledge the client's QoS 1 PUBLISH `packet_id` (MQTT 5: with `reason`, e.g. 0x87 Not
        authorized, 0x90 Topic name invalid, 0x97 Quota exceeded; dropped on 3.1.1)."""
        if self.state is not State.CONNECTED:
            return
        self._incoming.discard(packet_id)
        if self.version == V5 and (reason or reason_string):
            props = self._ack_props(reason_string)
            self._out += encode(pk.PubAck(packet_id, reason, props), V5)
        else:
            self._out += b"\x40\x02" + packet_id.to_bytes(2, "big")

    def suback(self, packet_id: int, reason_codes: Sequence[ReasonCode], reason_string: str | None = None) -> None:
        """Answer a SUBSCRIBE, one code per filter in order: GRANTED_QOS_0/1 or an error (on 3.1.1 every
        error becomes the failure code 0x80)."""
        if self.state is not State.CONNECTED:
            return
        if self.version == V5:
            packet = pk.SubAck(packet_id, tuple(reason_codes), self._ack_props(reason_string))
        else:
            packet = pk.SubAck(packet_id, tuple(0x80 if c >= 0x80 else int(c) for c in reason_codes))
        self._out += encode(packet, self.version or 4)

    def unsuback(
        self, packet_id: int, reason_codes: Sequence[ReasonCode] = (), reason_string: str | None = None
    ) -> None:
        """Answer an UNSUBSCRIBE (MQTT 5: one code per filter, default Success for each)."""
        if self.state is not State.CONNECTED:
            return
        count = self._unsubscribes.pop(packet_id, 1)
        codes = tuple(reason_codes) or (ReasonCode.SUCCESS,) * count
        packet = pk.UnsubAck(packet_id, codes, self._ack_props(reason_string))
        self._out += encode(packet, self.version or 4)

    def _ack_props(self, reason_string: str | None) -> AckProperties:
        if reason_string is None or not self._problem_info:
            return EMPTY_ACK
        return AckProperties(reason_string=reason_string)

    @property
    def inflight(self) -> int:
        """Our QoS 1 PUBLISHes not yet acknowledged."""
        return len(self._inflight)

    @property
    def inflight_available(self) -> int:
        """How many more QoS 1 PUBLISHes `publish` accepts now."""
        return max(0, self._inflight_limit - len(self._inflight))

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        *,
        retain: bool = False,
        properties: PublishProperties = EMPTY_PUBLISH,
    ) -> int | None:
        """Queue a PUBLISH to the client; returns its packet id for QoS 1 (a `PubackReceived` with it
        follows), None for QoS 0. Raises `InflightWindowFull`, `PacketTooLargeForClient`, or
        `SessionError` when not connected."""
        if self.state is not State.CONNECTED:
            raise SessionError(f"publish in state {self.state.value}")
        packet_id = None
        if qos == 1:
            if len(self._inflight) >= self._inflight_limit:
                raise InflightWindowFull(f"{len(self._inflight)} QoS 1 messages in flight")
            packet_id = self._free_id()
        elif qos != 0:
            raise ValueError(f"the server publishes QoS 0 or 1, not {qos}")
        data = encode_publish(pk.Publish(topic, payload, qos, retain, False, packet_id, properties), self.version == V5)
        if self._client_max_packet is not None and len(data) > self._client_max_packet:
            raise PacketTooLargeForClient(f"{len(data)} bytes > client maximum {self._client_max_packet}")
        if packet_id is not None:
            self._inflight.add(packet_id)
        self._out += data
        return packet_id

    def _free_id(self) -> int:
        pid = self._next_id
        while True:
            pid = pid % 0xFFFF + 1
            if pid not in self._inflight:
                self._next_id = pid
                return pid

    def disconnect(
        self,
        reason: ReasonCode = ReasonCode.NORMAL_DISCONNECTION,
        *,
        reason_string: str | None = None,
        server_reference: str | None = None,
    ) -> None:
        """End the session from the server side, then close the transport after writing
        `data_to_send()`. MQTT 5: a DISCONNECT with `reason` (e.g. 0x8E Session taken over, 0x8B Server
        shutting down); 3.1.1: nothing is sent. Before CONNACK this refuses the CONNECT instead."""
        if self.state is State.CLOSED:
            return
        if self.state is State.AWAIT_CONNACK:
            refusal = reason if reason in CONNACK_REASONS and reason.is_error else ReasonCode.UNSPECIFIED_ERROR
            self._write_connack(refusal, False, None)
        elif self.state is State.CONNECTED and self.version == V5:
            if reason not in SERVER_DISCONNECT_REASONS:
                raise ValueError(f"a server does not send DISCONNECT {reason.name}")
            props = EMPTY_DISCONNECT
            if reason_string is not None or server_reference is not None:
                props = DisconnectProperties(reason_string=reason_string, server_reference=server_reference)
            self._out += encode(pk.Disconnect(reason, props), V5)
        self._close()


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)
