"""The event filter model and its WebSocket / MQTT syntaxes (integrations/filters.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrations.filters import (
    NO_FILTER,
    EventFilter,
    FilterError,
    from_mqtt,
    from_query,
    from_topic_levels,
    from_user_properties,
)
from schemas.events import DeviceEvent, build_device_event

CONN = "io.drogue.connection.v1"
TELEMETRY = "io.drogue.event.v1"


def event(*, type_: str = TELEMETRY, channel: str | None = "telemetry", device: str = "dev1",
          sender: str | None = None) -> DeviceEvent:
    ev = build_device_event(app="app", app_uid=None, device=device, device_uid=None, sender=sender or device,
                            sender_uid=None, instance="t", channel=channel or "x", payload=b"{}",
                            content_type=None, type_=type_, time=datetime(2026, 1, 1, tzinfo=UTC))
    if channel is None:
        from dataclasses import replace
        ev = replace(ev, subject=None)
    return ev


def test_empty_filter_matches_everything() -> None:
    assert NO_FILTER.is_empty
    assert NO_FILTER.matches(event())
    assert NO_FILTER.matches(event(channel=None))
    assert NO_FILTER.describe() == "*"


def test_values_of_one_kind_are_ored_and_kinds_anded() -> None:
    f = EventFilter(types=frozenset({CONN, TELEMETRY}), channels=frozenset({"telemetry"}))
    assert f.matches(event(type_=TELEMETRY, channel="telemetry"))
    assert f.matches(event(type_=CONN, channel="telemetry"))
    assert not f.matches(event(type_=TELEMETRY, channel="state"))
    assert not f.matches(event(type_="other", channel="telemetry"))
    assert not f.matches(event(channel=None))


def test_device_matches_the_device_or_the_sender() -> None:
    f = EventFilter(devices=frozenset({"gw"}))
    assert f.matches(event(device="gw"))
    assert f.matches(event(device="dev7", sender="gw"))
    assert not f.matches(event(device="dev7", sender="other"))
    assert EventFilter(devices=frozenset({"dev7"})).matches(event(device="dev7", sender="gw"))


def test_query_syntax_repeatable_and_comma_separated() -> None:
    f = from_query([("type", CONN), ("type", f"{TELEMETRY},x"), ("channel", "telemetry"), ("group_id", "g"),
                    ("token", "abc"), ("device", "a,b")])
    assert f == EventFilter(frozenset({CONN, TELEMETRY, "x"}), frozenset({"telemetry"}), frozenset({"a", "b"}))
    assert f.describe() == f"type={CONN}|{TELEMETRY}|x channel=telemetry device=a|b"
    assert from_query([("group_id", "g")]) is NO_FILTER


@pytest.mark.parametrize("params", [[("type", "")], [("channel", "a,,b")], [("device", ",")], [("type", "a,")]])
def test_query_empty_values_are_errors(params: list[tuple[str, str]]) -> None:
    with pytest.raises(FilterError, match="empty"):
        from_query(params)


def test_topic_levels() -> None:
    assert from_topic_levels([]) is NO_FILTER
    assert from_topic_levels(["type", CONN]) == EventFilter(types=frozenset({CONN}))
    assert from_topic_levels(["channel", "telemetry", "device", "dev1"]) == EventFilter(
        channels=frozenset({"telemetry"}), devices=frozenset({"dev1"}))
    assert from_topic_levels(["device", "d1", "device", "d2"]) == from_topic_levels(["device", "d1,d2"])


def test_topic_levels_are_percent_decoded_after_splitting_commas() -> None:
    f = from_topic_levels(["channel", "sensors%2Ftemp,a%2Cb"])
    assert f.channels == {"sensors/temp", "a,b"}


@pytest.mark.parametrize(
    ("levels", "message"),
    [
        (["type"], "pairs"),
        (["type", CONN, "channel"], "pairs"),
        (["colour", "red"], "unknown filter kind 'colour'"),
        (["type", "+"], "wildcards"),
        (["#", "x"], "unknown filter kind"),
        (["device", "a#"], "wildcards"),
        (["type", ""], "empty"),
        (["device", "a,,b"], "empty"),
        (["device", "%FF"], "UTF-8"),
    ],
)
def test_topic_level_errors(levels: list[str], message: str) -> None:
    with pytest.raises(FilterError, match=message):
        from_topic_levels(levels)


def test_user_properties_and_combination_with_levels() -> None:
    assert from_user_properties([("content-mode", "binary")]) is NO_FILTER
    assert from_user_properties([("type", f"{CONN},{TELEMETRY}")]).types == {CONN, TELEMETRY}
    f = from_mqtt(["type", CONN], [("type", TELEMETRY), ("device", "d1"), ("content-mode", "structured")])
    assert f == EventFilter(types=frozenset({CONN, TELEMETRY}), devices=frozenset({"d1"}))
    with pytest.raises(FilterError):
        from_mqtt([], [("channel", "")])


# ------------------------------------------------------------------------------------------- properties

_value = st.text(st.characters(codec="utf-8", exclude_characters=","), min_size=1, max_size=12)
_values = st.frozensets(_value, max_size=3)
_filters = st.builds(EventFilter, _values, _values, _values)


@given(_filters)
def test_query_round_trip(f: EventFilter) -> None:
    assert from_query(f.to_query()) == f


@given(_filters)
def test_topic_level_round_trip(f: EventFilter) -> None:
    from urllib.parse import quote

    levels = [x for kind, v in f.to_query() for x in (kind, quote(v, safe=""))]
    assert from_topic_levels(levels) == f


_names = st.sampled_from(["a", "b", "c", None])


@given(_filters, st.sampled_from([CONN, TELEMETRY, "a", "b"]), _names, st.sampled_from(["a", "b", "c"]),
       st.sampled_from(["a", "b", "c"]))
def test_matches_is_or_within_kind_and_across_kinds(f: EventFilter, type_: str, channel: str | None,
                                                     device: str, sender: str) -> None:
    ev = event(type_=type_, channel=channel, device=device, sender=sender)
    expected = (
        (not f.types or type_ in f.types)
        and (not f.channels or channel in f.channels)
        and (not f.devices or device in f.devices or sender in f.devices)
    )
    assert f.matches(ev) is expected
