"""Coverage-guided fuzzing of the MQTT codec and server session with atheris (issue 9), run on demand:

    .venv/bin/python tests/protocols/fuzz_mqtt.py -runs=200000        # or -max_total_time=60

Not collected by pytest (the hypothesis fuzz tests in test_codec_fuzz.py run with the suite). The
invariant is the same: whatever the bytes and however they are cut, the decoder raises nothing but
`MqttProtocolError` and the session raises nothing at all. Needs `pip install -e '.[fuzz]'`."""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocols.mqtt import Decoder, MqttProtocolError, ProtocolVersion, ServerSession, State


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    cuts = [fdp.ConsumeIntInRange(1, 64) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    wire = fdp.ConsumeBytes(fdp.remaining_bytes())
    chunks: list[bytes] = []
    pos = 0
    for cut in cuts:
        chunks.append(wire[pos : pos + cut])
        pos += cut
    chunks.append(wire[pos:])
    if mode == 3:
        session = ServerSession(now=0.0)
        for i, chunk in enumerate(chunks):
            session.receive(chunk, float(i))
            if session.state is State.AWAIT_CONNACK:
                session.connack(assigned_client_identifier="x", now=float(i))
            session.poll(float(i))
            session.data_to_send()
        return
    version = (None, ProtocolVersion.V311, ProtocolVersion.V5)[mode]
    decoder = Decoder(version, max_packet_size=4096)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
    except MqttProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
