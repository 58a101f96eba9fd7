"""The per-source connect rate limiter of the MQTT endpoint (pure token buckets)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ingress.mqtt.ratelimit import ConnectRateLimiter
from kedge.settings import MqttEndpointSettings


def test_burst_then_refill() -> None:
    limiter = ConnectRateLimiter(2.0, 3)
    assert [limiter.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b", 0.0)  # another source has its own bucket
    assert not limiter.allow("a", 0.4)  # 0.8 tokens
    assert limiter.allow("a", 0.5)  # 1 token (0.4 s + 0.1 s)
    assert not limiter.allow("a", 0.5)
    assert [limiter.allow("a", 100.0) for _ in range(4)] == [True, True, True, False]  # never above the burst


def test_disabled() -> None:
    limiter = ConnectRateLimiter(0, 1)
    assert all(limiter.allow("a", 0.0) for _ in range(1000))
    assert len(limiter) == 0


def test_memory_is_bounded_and_full_buckets_go_first() -> None:
    limiter = ConnectRateLimiter(1.0, 2, max_sources=3)
    for n in range(3):
        limiter.allow(f"s{n}", 0.0)
    limiter.allow("s0", 0.0)  # s0 empty, s1/s2 half full
    limiter.allow("s3", 5.0)  # s1 and s2 refilled by now: forgotten
    assert len(limiter) <= 3
    assert limiter.allow("s0", 5.0)  # s0 refilled too (5 s at 1/s)
    for n in range(100):
        limiter.allow(f"x{n}", 5.0)
    assert len(limiter) <= 3


@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 0.5)), max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(steps: list[tuple[str, float]]) -> None:
    rate, burst = 3.0, 5
    limiter = ConnectRateLimiter(rate, burst)
    now = 0.0
    allowed: dict[str, int] = {}
    for source, dt in steps:
        now += dt
        if limiter.allow(source, now):
            allowed[source] = allowed.get(source, 0) + 1
    for count in allowed.values():
        assert count <= burst + rate * now + 1e-9


def test_defaults_are_generous_but_finite() -> None:
    m = MqttEndpointSettings()
    assert m.connect_rate_per_source > 0 and m.connect_burst_per_source >= 100
