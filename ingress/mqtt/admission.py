"""CONNECT admission of one MQTT connection: login form, authentication, dialect, the device-state agent."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from ingress.mqtt.topics import Dialect, DialectInvalid
from protocols.mqtt import ConnectReceived, ProtocolVersion, ReasonCode
from schemas.auth import AuthOutcome, AuthUnavailable
from schemas.state import Reason, Will

if TYPE_CHECKING:
    from ingress.mqtt.connection import MqttConnection

__all__ = ["admit"]

log = logging.getLogger(__name__)

V5 = ProtocolVersion.V5


async def admit(conn: MqttConnection, event: ConnectReceived) -> ReasonCode:
    """Authenticate ``event``'s device and ask the agent to make it the holder; the CONNACK reason.

    §17 row 14.8: FAIL (or unusable credentials) 0x86 / v3 4, DISABLED 0x87 / v3 5, registry or device-state
    unavailable or refused 0x88 / v3 3, per-source connect rate exceeded 0x9F / v3 3.
    On success ``conn`` knows its identity, dialect and connection id and is
    registered with the endpoint (kicks and commands find it)."""
    connect = event.connect
    if not conn.ep.connect_allowed(conn.transport, conn.loop.time()):
        conn.ep.metrics.auth_failure("rate_limited")
        return ReasonCode.CONNECTION_RATE_EXCEEDED
    if event.persistent_session:
        # no session state outlives a connection (reference §5: clean session required)
        return ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR if event.version == V5 \
            else ReasonCode.CLIENT_IDENTIFIER_NOT_VALID
    login = conn.ep.login(connect, conn.transport)
    if login is None:
        conn.ep.metrics.auth_failure("missing")
        return ReasonCode.BAD_USER_NAME_OR_PASSWORD
    try:
        result = await conn.ep.authenticator.authenticate(login.app, login.device, login.credential)
    except AuthUnavailable as exc:
        conn.ep.metrics.auth_failure("unavailable")
        log.warning("device registry unavailable: %s", exc)
        return ReasonCode.SERVER_UNAVAILABLE
    if result.outcome is AuthOutcome.DISABLED:
        conn.ep.metrics.auth_failure("disabled")
        return ReasonCode.NOT_AUTHORIZED
    if not result.ok or result.identity is None:
        conn.ep.metrics.auth_failure("fail")
        return ReasonCode.BAD_USER_NAME_OR_PASSWORD
    identity = result.identity
    try:
        conn.dialect = Dialect.of(identity.mqtt_dialect)
    except DialectInvalid as exc:
        log.warning("refusing %s/%s: %s", identity.app, identity.device, exc)
        return ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR
    if conn.ended:
        return ReasonCode.SERVER_UNAVAILABLE
    will = None
    if connect.will is not None:
        w = connect.will
        will = Will(w.topic, w.payload, w.properties.content_type)
    conn.identity = identity
    conn.connection_id = cid = uuid.uuid4().hex
    conn.ep.register(conn)
    state = conn.ep.state
    try:
        reply = await state.connect(identity.app, identity.device, cid, conn.ep.protocol_name(event.version),
                                    identity.app_uid, identity.device_uid, will)
    except Exception as exc:  # StateUnavailable, or anything else of the state link
        log.warning("device state unavailable for %s/%s: %s", identity.app, identity.device, exc)
        conn.ep.unregister(conn)
        conn.ep.spawn(state.disconnect(identity.app, identity.device, cid, Reason.ERROR, skip_will=True))
        return ReasonCode.SERVER_UNAVAILABLE
    if not reply.accepted:
        conn.ep.unregister(conn)
        log.warning("device state refused %s/%s: %s", identity.app, identity.device, reply.reason)
        return ReasonCode.SERVER_UNAVAILABLE
    conn.accepted = True
    if conn.ended and not conn.kicked:  # the client left while we waited
        conn.ep.spawn(state.disconnect(identity.app, identity.device, cid, Reason.NORMAL, skip_will=False))
    if conn.ended:
        return ReasonCode.SERVER_UNAVAILABLE
    return ReasonCode.SUCCESS
