"""Micro benchmark of the MQTT endpoint's per-message ingest path, in one process, without sockets or Kafka:

bytes of pre-encoded 200-byte PUBLISH frames -> ``MqttConnection.data_received`` (codec, session, dialect,
``build_device_event``, metrics) -> the real :class:`ingress.publish.Publisher` (backlog, drain task, QoS 1
callbacks, in-flight accounting, ``to_kafka``) -> a stand-in producer whose ``send`` returns an ack future that
it resolves at the next loop iteration, batch by batch, as aiokafka does once a linger passed -> PUBACKs
written to a counting transport.

It prints CPU microseconds per message (process time, so other load on the machine matters less) for QoS 0
and QoS 1, MQTT 3.1.1 and 5, best of a few rounds. The stand-in producer costs about what a tuple append costs,
so the figure is Kedge's own share of the endpoint's per-message CPU; the real aiokafka ``send`` and the
socket I/O come on top (see benchmarks/mqtt_ingress.py for the end-to-end rows).

Run: `.venv/bin/python benchmarks/mqtt_ingest_path.py [--messages 200000] [--profile out.txt]`.
No assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import uvloop  # noqa: E402

from ingress.metrics import IngressMetrics  # noqa: E402
from ingress.mqtt.connection import MqttConnection  # noqa: E402
from ingress.mqtt.endpoint import MqttEndpoint  # noqa: E402
from ingress.publish import Publisher  # noqa: E402
from protocols.mqtt import Connect, ProtocolVersion, Publish, SessionConfig, encode  # noqa: E402
from schemas.auth import DeviceIdentity  # noqa: E402

APP = "bench"
DEVICES = 64
INFLIGHT = 32


class _Cluster:
    def topics(self) -> set[str]:
        return {f"events-{APP}"}


class _Metadata:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0, 1, 2}


class _Client:
    cluster = _Metadata()

    async def fetch_all_metadata(self) -> _Cluster:
        return _Cluster()


class StandInProducer:
    """``send`` appends and returns an ack future; one callback resolves the whole batch (no timer, so the
    benchmark's waits for the acks do not spin the loop idle)."""

    def __init__(self) -> None:
        self.client = _Client()
        self.sent = 0
        self._batch: list[asyncio.Future[Any]] = []
        self._loop = asyncio.get_running_loop()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, topic: str, value: bytes, *, key: bytes, headers: list[tuple[str, bytes]],
                   **_: Any) -> asyncio.Future[Any]:
        self.sent += 1
        ack = self._loop.create_future()
        if not self._batch:
            self._loop.call_soon(self._flush)
        self._batch.append(ack)
        return ack

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        for ack in batch:
            ack.set_result(None)


class CountingTransport:
    def __init__(self) -> None:
        self.written = 0
        self.writes = 0
        self.paused = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.writes += 1

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Nothing:
    async def connect(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("not used")

    async def disconnect(self, *args: Any, **kw: Any) -> None:
        return None

    async def command_outcome(self, *args: Any, **kw: Any) -> None:
        return None

    async def authenticate(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("not used")

    async def authorize_as(self, *args: Any, **kw: Any) -> Any:
        raise AssertionError("not used")


def frame(qos: int, version: ProtocolVersion, device: int, pid: int) -> bytes:
    topic = "telemetry"
    body = (b'{"kb":"rawbench","d":"%07d","s":"%010d","t":"%019d","p":"' % (device, pid, time.time_ns()))
    body += b"x" * (198 - len(body)) + b'"}'
    return encode(Publish(topic, body, qos, packet_id=pid if qos else None), version)


def connection(ep: MqttEndpoint, version: ProtocolVersion, n: int) -> tuple[MqttConnection, CountingTransport]:
    conn = MqttConnection(ep)
    transport = CountingTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.session.receive(encode(Connect(f"d{n}", protocol_level=version), version), conn.loop.time())
    conn.version = version
    conn.identity = DeviceIdentity(app=APP, app_uid="uid-app", device=f"dev-{n:04d}", device_uid=f"uid-{n}")
    conn.connection_id = f"c{n}"
    conn.accepted = True
    conn.session.connack(now=conn.loop.time())
    conn.session.data_to_send()
    return conn, transport


async def _until(condition: Callable[[], bool]) -> None:
    """Yield to the loop until ``condition`` holds (a busy wait on purpose: it measures CPU, not latency)."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0)


async def run_case(qos: int, version: ProtocolVersion, messages: int) -> tuple[float, int]:
    metrics = IngressMetrics("mqtt")
    producer = StandInProducer()
    publisher = Publisher(lambda: producer, max_in_flight=8192, max_in_flight_bytes=64 << 20,  # type: ignore
                          timeout_s=10.0, on_outcome=metrics.outcome)
    await publisher.start(wait_s=1.0)
    ep = MqttEndpoint(instance="drogue", authenticator=_Nothing(), sink=publisher, state=_Nothing(),  # type: ignore
                      metrics=metrics, session_config=SessionConfig(receive_maximum=INFLIGHT * 2),
                      max_pending=INFLIGHT * 2)
    conns = [connection(ep, version, n) for n in range(DEVICES)]
    # per connection: INFLIGHT frames per chunk (QoS 1: then wait for their PUBACKs, as a device would)
    chunks = [b"".join(frame(qos, version, n, 1 + i) for i in range(INFLIGHT)) for n in range(DEVICES)]
    rounds = max(1, messages // (DEVICES * INFLIGHT))
    ack_len = len(b"\x40\x02\x00\x01")
    start = time.process_time()
    for _ in range(rounds):
        for (conn, _t), chunk in zip(conns, chunks, strict=True):
            conn.data_received(chunk)
        if qos:
            target = [t.written + INFLIGHT * ack_len for _c, t in conns]
            await _until(lambda target=target: all(  # type: ignore[misc]
                t.written >= want for (_c, t), want in zip(conns, target, strict=True)))
        else:
            await _until(lambda: publisher.in_flight <= 4096)
    await _until(lambda: publisher.in_flight == 0)
    cpu = time.process_time() - start
    done = rounds * DEVICES * INFLIGHT
    assert producer.sent == done, (producer.sent, done)
    assert metrics.events("accepted") == done, metrics.events("accepted")
    await publisher.stop()
    return cpu / done * 1e6, sum(t.writes for _c, t in conns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200_000, help="messages per case and round")
    parser.add_argument("--rounds", type=int, default=3, help="best of")
    parser.add_argument("--profile", type=Path, help="write a cProfile summary of one QoS 1 v3.1.1 run here")
    args = parser.parse_args()
    cases = [(q, v) for v in (ProtocolVersion.V311, ProtocolVersion.V5) for q in (0, 1)]
    print(f"{'case':<16} {'CPU us/msg':>10} {'writes/msg':>10}")
    for qos, version in cases:
        best, writes = min(uvloop.run(run_case(qos, version, args.messages)) for _ in range(args.rounds))
        name = f"v{'5' if version == ProtocolVersion.V5 else '3.1.1'} QoS {qos}"
        print(f"{name:<16} {best:>10.2f} {writes / args.messages:>10.3f}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        uvloop.run(run_case(1, ProtocolVersion.V311, args.messages))
        uvloop.run(run_case(0, ProtocolVersion.V311, args.messages))
        prof.disable()
        with args.profile.open("w") as out:
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(40)
        print(f"profile written to {args.profile}")


if __name__ == "__main__":
    main()
