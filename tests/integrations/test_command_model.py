"""The pure part of the command API: targets, records, outcome combination."""

from __future__ import annotations

import pytest

from integrations.commands.model import CommandTargets, Outcome, combine, command_requests
from integrations.ws.protocol import ProtocolError, RefreshAccessToken, close_reason, parse_client_message
from schemas.keys import device_key
from schemas.state import DEVICE_OFFLINE, CommandOutcome


def test_one_request_per_target_device_first() -> None:
    targets = CommandTargets(app_disabled=False, device_disabled=False, gateways=("gw1", "d", "gw2"))
    out = command_requests("app", "d", targets, "cmd", b"{}", "application/json", "api-1")
    assert [(k, r.route) for k, r in out] == [(device_key("app", t).encode(), t) for t in ("d", "gw1", "gw2")]
    assert [(r.device, r.sender) for _, r in out] == [("d", None), ("d", "gw1"), ("d", "gw2")], (
        "a gateway must learn which device the command is for")
    assert {r.reply_to for _, r in out} == {"api-1"}
    assert len({r.request_id for _, r in out}) == 3


def test_combine_outcomes() -> None:
    ok = CommandOutcome("a", True)
    offline = CommandOutcome("b", False, DEVICE_OFFLINE)
    assert combine([offline, ok]) == Outcome(True)
    assert combine([ok, None]) == Outcome(True)
    assert combine([offline, CommandOutcome("c", False, None)]) == Outcome(False, DEVICE_OFFLINE)
    assert combine([offline, None]).delivered is None
    assert combine([]).delivered is None


def test_client_messages() -> None:
    assert parse_client_message('{"RefreshAccessToken":"t"}') == RefreshAccessToken("t")
    assert parse_client_message(b'{"RefreshAccessToken":"t"}') == RefreshAccessToken("t")
    for bad in ("", "[]", "{}", '{"RefreshAccessToken":"t","x":1}', '{"RefreshAccessToken":null}', "\xff"):
        with pytest.raises(ProtocolError):
            parse_client_message(bad)


def test_close_reason_fits_a_close_frame() -> None:
    assert close_reason("short") == "short"
    long = "é" * 100
    cut = close_reason(long)
    assert len(cut.encode()) <= 123 and long.startswith(cut)
