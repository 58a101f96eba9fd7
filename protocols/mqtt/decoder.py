"""Incremental framing: feed bytes as they arrive, get every complete packet.

Linear in the bytes fed: a chunk is parsed in place when nothing is pending, only an incomplete tail is
buffered, and the buffer is trimmed once per `feed`. The maximum packet size is checked from the fixed
header, before any of the body is buffered."""

from __future__ import annotations

from protocols.mqtt.decode import decode_body, decode_publish
from protocols.mqtt.packets import Connect, Packet
from protocols.mqtt.reason import MqttProtocolError, ProtocolVersion, ReasonCode
from protocols.mqtt.wire import malformed

DEFAULT_MAX_PACKET_SIZE = 1024 * 1024


class Decoder:
    """Server-side incremental decoder of one connection.

    `version` None (the default) means "expecting CONNECT": the first packet must be a CONNECT, which sets
    the version for the rest of the stream; a second CONNECT is a protocol error. Pass a version to decode
    a stream that has no CONNECT (a client's view, tests). `max_packet_size` bounds the whole packet
    (fixed header included), as MQTT 5's Maximum Packet Size does.

    `feed` raises only `MqttProtocolError`; after it raised, the decoder must not be fed again."""

    __slots__ = ("_buf", "error", "max_packet_size", "pause_after_connect", "paused", "version")

    def __init__(
        self,
        version: ProtocolVersion | None = None,
        max_packet_size: int = DEFAULT_MAX_PACKET_SIZE,
        *,
        pause_after_connect: bool = False,
    ) -> None:
        self.version: ProtocolVersion | None = version
        self.max_packet_size = max_packet_size
        self._buf = bytearray()
        #: pause right after a CONNECT: nothing after it is decoded before the server accepted it
        self.pause_after_connect = pause_after_connect
        #: when True, `feed` buffers without decoding (see `resume`)
        self.paused = False
        #: the error that ended decoding, once valid packets before it were returned
        self.error: MqttProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet decoded."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """Decode every complete packet in what was buffered plus `data`. When a bad packet follows valid
        ones in the same chunk, the valid ones are returned and `error` is set: the next `feed` raises it."""
        if self.error is not None:
            raise self.error
        buf = self._buf
        if buf or self.paused:
            buf += data
            if self.paused:
                return []
            with memoryview(buf) as view:
                packets, pos = self._parse(view, len(buf))
            del buf[:pos]
            return packets
        if type(data) is not bytes:
            data = bytes(data)
        packets, pos = self._parse(data, len(data))
        if pos < len(data):
            buf += memoryview(data)[pos:]
        return packets

    def _parse(self, src: bytes | memoryview, n: int) -> tuple[list[Packet], int]:
        packets: list[Packet] = []
        pos = 0
        max_size = self.max_packet_size
        try:
            while n - pos >= 2:
                first = src[pos]
                byte = src[pos + 1]
                if byte < 0x80:
                    length = byte
                    header = 2
                else:
                    length = byte & 0x7F
                    header = 0
                    for i in range(2, 5):
                        if pos + i >= n:
                            break
                        byte = src[pos + i]
                        length |= (byte & 0x7F) << (7 * (i - 1))
                        if byte < 0x80:
                            header = i + 1
                            break
                    else:
                        raise malformed("remaining length longer than 4 bytes")
                    if not header:
                        break
                total = header + length
                if total > max_size:
                    raise MqttProtocolError(ReasonCode.PACKET_TOO_LARGE, f"packet of {total} bytes exceeds {max_size}")
                end = pos + total
                if end > n:
                    break
                start = pos + header
                pos = end
                version = self.version
                if first >> 4 == 3 and version is not None:
                    packets.append(decode_publish(first & 0x0F, src, start, end, version == 5))
                    continue
                packet = decode_body(first, bytes(src[start:end]), version)
                packets.append(packet)
                if type(packet) is Connect:
                    self.version = ProtocolVersion(packet.protocol_level)
                    if self.pause_after_connect:
                        self.paused = True
                        break
        except MqttProtocolError as exc:
            error = exc
        except (IndexError, ValueError, TypeError, OverflowError) as exc:  # a bug's safety net
            error = malformed(f"undecodable packet: {exc}")
        else:
            return packets, pos
        # the error must not keep views of the buffer alive (through its traceback frames or chained
        # exceptions), or the buffer could not be trimmed
        error.__traceback__ = error.__context__ = error.__cause__ = None
        if not packets:
            raise error
        # hand out the valid packets that came before the bad one; the error follows at the next feed
        self.error = error
        return packets, pos

    def resume(self) -> list[Packet]:
        """Undo `pause` and decode what was buffered meanwhile."""
        self.paused = False
        return self.feed(b"")
