"""The rollout policy as a spec: groups, thresholds, pacing, timeouts, retries, windows, cron."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skylift.campaigns.policy import (
    PACING_WINDOW,
    ErrorTally,
    ErrorThreshold,
    GroupTally,
    Window,
    error_trip_reason,
    finally_failed,
    group_bounds,
    group_index,
    group_succeeded,
    in_share,
    next_cron_run,
    notices_allowed,
    retry_due,
    stable_share,
    timed_out,
    valid_cron,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

cumulative_percents = st.lists(st.floats(min_value=0.5, max_value=99.5), max_size=5).map(
    lambda values: [*sorted(set(round(v, 1) for v in values)), 100.0]
)


class TestGroups:
    def test_three_groups_over_thirty_devices(self) -> None:
        assert group_bounds(30, [10, 50, 100]) == [3, 15, 30]

    def test_a_tiny_first_group_still_gets_one_device(self) -> None:
        assert group_bounds(30, [1, 10, 100]) == [1, 3, 30]

    def test_no_groups_is_one_group(self) -> None:
        assert group_bounds(7, []) == [7]

    def test_group_of_a_rank(self) -> None:
        bounds = [3, 15, 30]
        assert [group_index(r, bounds) for r in (0, 2, 3, 14, 15, 29)] == [0, 0, 1, 1, 2, 2]

    @given(total=st.integers(min_value=0, max_value=5000), groups=cumulative_percents)
    def test_bounds_cover_every_device_once(self, total: int, groups: list[float]) -> None:
        bounds = group_bounds(total, groups)
        assert len(bounds) == len(groups)
        assert bounds[-1] == total
        assert all(b <= a2 for b, a2 in zip(bounds, bounds[1:], strict=False))
        # While devices remain, every group adds at least one device.
        for previous, current in zip([0, *bounds], bounds, strict=False):
            assert current > previous or previous == total
        # A group never holds fewer devices than its share asks for.
        for bound, percent in zip(bounds, groups, strict=True):
            assert bound >= min(total, total * percent / 100 - 1e-9)

    def test_success_threshold(self) -> None:
        assert group_succeeded(GroupTally(size=10, succeeded=9), 90)
        assert not group_succeeded(GroupTally(size=10, succeeded=8), 90)
        assert group_succeeded(GroupTally(size=0, succeeded=0), 100)


class TestErrorThreshold:
    def test_percent_after_min_finished(self) -> None:
        threshold = ErrorThreshold(percent=50)
        assert error_trip_reason(ErrorTally(finished=4, failed=4), threshold, min_finished=5) is None
        reason = error_trip_reason(ErrorTally(finished=5, failed=3), threshold, min_finished=5)
        assert reason is not None
        assert "3 of 5" in reason

    def test_count(self) -> None:
        assert error_trip_reason(ErrorTally(finished=9, failed=2), ErrorThreshold(count=3), 1) is None
        assert error_trip_reason(ErrorTally(finished=9, failed=3), ErrorThreshold(count=3), 1) is not None

    def test_no_threshold_never_trips(self) -> None:
        assert error_trip_reason(ErrorTally(finished=100, failed=100), None, 1) is None

    @given(
        finished=st.integers(min_value=0, max_value=500),
        failed_share=st.floats(min_value=0, max_value=1),
        min_finished=st.integers(min_value=1, max_value=500),
        percent=st.floats(min_value=1, max_value=100),
        count=st.integers(min_value=1, max_value=50),
    )
    def test_never_judged_before_min_finished(
        self, finished: int, failed_share: float, min_finished: int, percent: float, count: int
    ) -> None:
        tally = ErrorTally(finished=finished, failed=int(finished * failed_share))
        for threshold in (ErrorThreshold(percent=percent), ErrorThreshold(count=count)):
            reason = error_trip_reason(tally, threshold, min_finished)
            if finished < min_finished:
                assert reason is None


class TestPacing:
    def test_unlimited(self) -> None:
        assert notices_allowed(T0, [T0] * 1000, None) is None

    def test_sends_within_the_last_minute_count(self) -> None:
        sends = [T0 - timedelta(seconds=s) for s in (1, 30, 59, 61, 120)]
        assert notices_allowed(T0, sends, 5) == 2

    @settings(max_examples=200)
    @given(
        limit=st.integers(min_value=1, max_value=20),
        gaps=st.lists(st.integers(min_value=0, max_value=90_000), min_size=1, max_size=60),
    )
    def test_never_more_than_the_limit_in_any_minute(self, limit: int, gaps: list[int]) -> None:
        """An engine that sends whatever it is allowed at arbitrary tick times stays within the limit."""
        sends: list[datetime] = []
        now = T0
        for gap in gaps:
            now += timedelta(milliseconds=gap)
            allowed = notices_allowed(now, sends, limit)
            assert allowed is not None
            sends.extend([now] * allowed)
        for start in sends:
            in_window = [s for s in sends if start <= s < start + PACING_WINDOW]
            assert len(in_window) <= limit


class TestTimeoutsAndRetries:
    def test_timeout(self) -> None:
        assert not timed_out(T0, T0 + timedelta(minutes=4, seconds=59), 5)
        assert timed_out(T0, T0 + timedelta(minutes=5), 5)
        assert not timed_out(T0, T0 + timedelta(days=9), None)

    def test_retries_until_used_up(self) -> None:
        assert retry_due(attempts=1, retry_count=2, failed_at=T0, now=T0 + timedelta(minutes=5), interval_minutes=5)
        assert not retry_due(attempts=1, retry_count=2, failed_at=T0, now=T0 + timedelta(minutes=4), interval_minutes=5)
        assert not retry_due(attempts=3, retry_count=2, failed_at=T0, now=T0 + timedelta(hours=1), interval_minutes=5)
        assert finally_failed(attempts=3, retry_count=2)
        assert not finally_failed(attempts=2, retry_count=2)


class TestShare:
    @given(device_id=st.integers(min_value=1, max_value=10**9), product_id=st.integers(min_value=1, max_value=10**6))
    def test_stable_and_nested(self, device_id: int, product_id: int) -> None:
        share = stable_share(product_id, device_id)
        assert share == stable_share(product_id, device_id)
        assert 0 <= share < 100
        # A device picked for 10 % is also picked for 20 %: a widening rollout keeps its devices.
        assert not in_share(product_id, device_id, 10) or in_share(product_id, device_id, 20)

    def test_roughly_the_asked_share(self) -> None:
        picked = sum(in_share(1, device_id, 10) for device_id in range(1, 10_001))
        assert 850 <= picked <= 1150


class TestWindowAndCron:
    def test_window(self) -> None:
        window = Window(start=time(2), end=time(5), tz="UTC")
        assert window.contains(T0.replace(hour=3))
        assert not window.contains(T0.replace(hour=5))

    def test_window_past_midnight_in_a_time_zone(self) -> None:
        window = Window(start=time(22), end=time(4), tz="Asia/Shanghai")
        assert window.contains(datetime(2026, 11, 23, 15, 0, tzinfo=UTC))  # 23:00 in Shanghai
        assert not window.contains(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))  # 12:00 in Shanghai

    def test_cron(self) -> None:
        assert next_cron_run("0 2 * * *", T0) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
        assert next_cron_run("*/5 * * * *", T0) == T0 + timedelta(minutes=5)

    @pytest.mark.parametrize("expression", ["0 2 * *", "61 * * * *", "hello"])
    def test_invalid_cron(self, expression: str) -> None:
        assert not valid_cron(expression)
