"""The benchmark payload: a fixed-layout JSON object carrying run id, device index, sequence and send time.

Every field has a fixed width, so a payload of a given size always has the same length (the load generator
pre-encodes its frames) and the consumer parses it by slicing, without a JSON parser::

    {"kb":"<run 8>","d":"<device 7>","s":"<seq 10>","t":"<unix ns 19>","p":"<padding>"}
"""

from __future__ import annotations

from dataclasses import dataclass

_HEAD = b'{"kb":"'
_RUN_LEN = 8
_DEV_OFF = len(_HEAD) + _RUN_LEN + len(b'","d":"')
_SEQ_OFF = _DEV_OFF + 7 + len(b'","s":"')
_T_OFF = _SEQ_OFF + 10 + len(b'","t":"')
_PAD_OFF = _T_OFF + 19 + len(b'","p":"')
#: the smallest payload (no padding)
MIN_SIZE = _PAD_OFF + 2
MAX_DEVICES = 10_000_000


@dataclass(frozen=True, slots=True)
class Sample:
    device: int
    seq: int
    sent_ns: int


class PayloadFormat:
    """Payloads of exactly ``size`` bytes for run ``run_id`` (8 ASCII characters)."""

    def __init__(self, run_id: str, size: int) -> None:
        if len(run_id) != _RUN_LEN or not run_id.isascii() or not run_id.isalnum():
            raise ValueError(f"run id must be {_RUN_LEN} ASCII letters or digits, got {run_id!r}")
        if size < MIN_SIZE:
            raise ValueError(f"payload size must be at least {MIN_SIZE} bytes, got {size}")
        self.run_id = run_id
        self.size = size
        self.prefix = _HEAD + run_id.encode() + b'","d":"'
        pad = b"x" * (size - MIN_SIZE)
        self._template = self.prefix + b'%07d","s":"%010d","t":"%019d","p":"' + pad + b'"}'

    def make(self, device: int, seq: int, sent_ns: int) -> bytes:
        return self._template % (device, seq, sent_ns)

    def parse(self, value: bytes | None) -> Sample | None:
        """The sample in ``value``, or None if it is not a payload of this run (other traffic on the topic)."""
        if value is None or len(value) != self.size or not value.startswith(self.prefix):
            return None
        try:
            return Sample(int(value[_DEV_OFF:_DEV_OFF + 7]), int(value[_SEQ_OFF:_SEQ_OFF + 10]),
                          int(value[_T_OFF:_T_OFF + 19]))
        except ValueError:
            return None
