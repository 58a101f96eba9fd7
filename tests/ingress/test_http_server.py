"""The listening socket of `kedge serve http`: port 0 and SO_REUSEPORT for several processes on one port."""

from __future__ import annotations

import pytest

from ingress.http.server import bind


def test_port_zero_picks_a_free_port() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_reuse_port_lets_two_listeners_share_a_port() -> None:
    first = bind("127.0.0.1", 0, reuse_port=True)
    try:
        second = bind("127.0.0.1", first.getsockname()[1], reuse_port=True)
        second.close()
        with pytest.raises(OSError):
            bind("127.0.0.1", first.getsockname()[1]).close()  # without it: address in use
    finally:
        first.close()
