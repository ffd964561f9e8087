"""Rate limits with time as an input: connects per device, message pace, failed logins per address."""

from __future__ import annotations

import pytest

from skylift.broker.rates import RateGate, RateLimits, TokenBucket


def test_a_device_may_connect_so_often_a_minute() -> None:
    gate = RateGate(RateLimits(connects_per_minute=3))
    assert [gate.may_connect(1, t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert gate.may_connect(2, 3)  # another device is not affected
    assert not gate.may_connect(1, 59.9)
    assert gate.may_connect(1, 60.5)  # the first connect has left the window


def test_a_burst_is_read_at_once_then_paced() -> None:
    bucket = TokenBucket(rate=10, capacity=5, tokens=5, at=0)
    assert [bucket.take(0) for _ in range(5)] == [0, 0, 0, 0, 0]
    assert bucket.take(0) == pytest.approx(0.1)
    assert bucket.take(0) == pytest.approx(0.2)  # each one waits behind the previous
    assert bucket.take(10) == 0  # refilled, up to the burst


def test_failed_logins_back_an_address_off_with_growing_pauses() -> None:
    gate = RateGate(RateLimits(failed_logins_per_minute=3, backoff_seconds=10, max_backoff_seconds=25))
    for t in (0, 1, 2):
        assert not gate.login_backed_off("a", t)
        gate.login_failed("a", t)
    assert gate.login_backed_off("a", 2)
    assert not gate.login_backed_off("b", 2)
    assert gate.login_backed_off("a", 11.9)
    assert not gate.login_backed_off("a", 12.1)
    for t in (13, 14, 15):
        gate.login_failed("a", t)
    assert gate.login_backed_off("a", 15 + 19.9)  # twice as long the second time
    assert not gate.login_backed_off("a", 15 + 20.1)
    for t in (40, 41, 42):
        gate.login_failed("a", t)
    assert gate.login_backed_off("a", 42 + 24.9)  # capped
    assert not gate.login_backed_off("a", 42 + 25.1)


def test_failures_spread_over_time_never_back_off() -> None:
    gate = RateGate(RateLimits(failed_logins_per_minute=3))
    for t in range(0, 600, 30):
        gate.login_failed("a", t)
        assert not gate.login_backed_off("a", t)
