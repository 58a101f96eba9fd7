"""Unit tests: state and record codecs, endpoint-control addressing, lease deadline bookkeeping."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.device_state.model import DeviceState, Holder, RegistryMark, marks_from_bytes, marks_to_bytes
from agents.device_state.partition import split_device_key
from agents.leases import LeaseClock
from schemas.keys import device_key
from schemas.state import (
    EndpointLost,
    Heartbeat,
    MalformedRecord,
    Reason,
    Will,
    control_partition,
    decode_state_request,
)


def test_device_state_round_trips_through_bytes() -> None:
    holder = Holder("app", "dev", "c1", "e1", "mqtt", "au", "du", 12.5, 7, Will("t", b"\x00\xff", "text/plain"))
    state = DeviceState(holder, 7, ("c0",), (RegistryMark("du", 3, Reason.DEVICE_DISABLED),))
    assert DeviceState.from_bytes(state.to_bytes()) == state
    assert DeviceState.from_bytes(DeviceState().to_bytes()) == DeviceState()
    marks = (RegistryMark("a", 1, None), RegistryMark("b", 2, Reason.APP_DELETED))
    assert marks_from_bytes(marks_to_bytes(marks)) == marks


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"holder": 1}', b'{"holder": null, "sequence": "x", "ended": []}'])
def test_corrupt_state_is_a_malformed_record(raw: bytes) -> None:
    with pytest.raises(MalformedRecord):
        DeviceState.from_bytes(raw)


def test_endpoint_lost_is_a_state_request() -> None:
    assert decode_state_request(EndpointLost("e1").to_bytes()) == EndpointLost("e1")
    with pytest.raises(MalformedRecord):
        decode_state_request(b'{"kind":"endpoint-lost","endpoint":""}')


def test_control_partition_is_stable_and_in_range() -> None:
    assert control_partition("endpoint-a", 1) == 0
    assert control_partition("endpoint-a", 8) == control_partition("endpoint-a", 8)
    assert {control_partition(f"e{i}", 4) for i in range(100)} == {0, 1, 2, 3}
    with pytest.raises(ValueError):
        control_partition("e", 0)


def test_negative_lease_is_refused() -> None:
    with pytest.raises(MalformedRecord):
        Heartbeat.from_bytes(b'{"kind":"heartbeat","endpoint":"e","seq":1,"time":0,"lease_s":-1}')


def test_lease_clock_reports_each_expired_lease_once_and_honours_renewals() -> None:
    clock = LeaseClock()
    clock.track("a", 10.0, 1)
    clock.track("b", 11.0, 1)
    clock.track("a", 20.0, 2)  # renewed: the old deadline no longer counts
    assert clock.expired(15.0) == [("b", 1)]
    assert clock.expired(15.0) == []
    clock.track("c", 12.0, 1)
    clock.forget("c")  # released: never reported as expired
    assert clock.expired(25.0) == [("a", 2)]
    assert clock.current == {}


@given(st.text(min_size=1), st.text(min_size=1))
def test_device_keys_split_back_into_app_and_device(app: str, device: str) -> None:
    try:
        key = device_key(app, device)
    except UnicodeEncodeError:  # lone surrogates are no valid names
        return
    assert split_device_key(key) == (app, device)
