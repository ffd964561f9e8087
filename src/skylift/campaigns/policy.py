"""Rollout policy, free of I/O: groups, thresholds, pacing, timeouts, retries, windows, schedules.

The engine gathers facts from the database, asks these functions what to do, and does it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

PACING_WINDOW = timedelta(minutes=1)


def stable_share(product_id: int, device_id: int) -> float:
    """A device's fixed place in [0, 100) for percent targeting: the same devices are picked again."""
    digest = hashlib.sha256(f"skylift-share:{product_id}:{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def in_share(product_id: int, device_id: int, percent: float) -> bool:
    return stable_share(product_id, device_id) < percent


def group_bounds(total: int, groups: Sequence[float]) -> list[int]:
    """Cumulative device counts per group for cumulative percents, e.g. 30 × [10, 50, 100] → [3, 15, 30].

    Every group gets at least one more device than the one before while devices remain, and the last
    group always reaches `total`, so a rollout never strands devices.
    """
    if total <= 0:
        return [0 for _ in groups] or [0]
    if not groups:
        return [total]
    bounds: list[int] = []
    previous = 0
    for index, percent in enumerate(groups):
        count = total if index == len(groups) - 1 else math.ceil(total * percent / 100)
        count = min(total, max(count, previous + 1 if previous < total else previous))
        bounds.append(count)
        previous = count
    return bounds


def group_index(rank: int, bounds: Sequence[int]) -> int:
    """The group of the device at 0-based `rank` in the rollout order."""
    for index, bound in enumerate(bounds):
        if rank < bound:
            return index
    return len(bounds) - 1


@dataclass(frozen=True)
class GroupTally:
    size: int
    succeeded: int


def group_succeeded(tally: GroupTally, success_threshold: float) -> bool:
    """Whether a group reached its success threshold (percent of its devices that succeeded)."""
    if tally.size == 0:
        return True
    return tally.succeeded * 100 >= success_threshold * tally.size


@dataclass(frozen=True)
class ErrorThreshold:
    percent: float | None = None
    count: int | None = None


@dataclass(frozen=True)
class ErrorTally:
    finished: int  # succeeded + finally failed
    failed: int  # finally failed (no retry left)


def error_trip_reason(tally: ErrorTally, threshold: ErrorThreshold | None, min_finished: int) -> str | None:
    """Why the error threshold is crossed, or None. Never judged before `min_finished` devices finished."""
    if threshold is None or tally.finished < max(min_finished, 1):
        return None
    if threshold.count is not None and tally.failed >= threshold.count:
        return f"error threshold reached: {tally.failed} devices failed (limit {threshold.count})"
    if threshold.percent is not None and tally.failed * 100 >= threshold.percent * tally.finished:
        share = tally.failed * 100 / tally.finished
        return (
            f"error threshold reached: {tally.failed} of {tally.finished} finished devices failed "
            f"({share:.0f}% ≥ {threshold.percent:g}%)"
        )
    return None


def notices_allowed(now: datetime, recent_sends: Sequence[datetime], max_per_minute: int | None) -> int | None:
    """How many notices may go out now so that no 60-second window holds more than `max_per_minute`.

    None means unlimited. `recent_sends` are the send times of this campaign's earlier notices.
    """
    if max_per_minute is None:
        return None
    in_window = sum(1 for sent in recent_sends if now - sent < PACING_WINDOW)
    return max(0, max_per_minute - in_window)


def timed_out(last_activity: datetime, now: datetime, timeout_minutes: float | None) -> bool:
    return timeout_minutes is not None and now - last_activity >= timedelta(minutes=timeout_minutes)


def finally_failed(attempts: int, retry_count: int) -> bool:
    """A failed device counts as finally failed once its automatic retries are used up."""
    return attempts > retry_count


def retry_due(attempts: int, retry_count: int, failed_at: datetime, now: datetime, interval_minutes: float) -> bool:
    return not finally_failed(attempts, retry_count) and now - failed_at >= timedelta(minutes=interval_minutes)


@dataclass(frozen=True)
class Window:
    """A daily maintenance window in local time; it may wrap past midnight (22:00–04:00)."""

    start: time
    end: time
    tz: str = "UTC"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz)).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def next_cron_run(expression: str, after: datetime, tz: str = "UTC") -> datetime:
    """The first time strictly after `after` that matches the cron expression, in `tz`."""
    local_after = after.astimezone(ZoneInfo(tz))
    following: datetime = croniter(expression, local_after).get_next(datetime)
    return following.astimezone(after.tzinfo)


def valid_cron(expression: str) -> bool:
    """The standard five fields (minute hour day month weekday); croniter would also read a sixth
    field as seconds (or a year), which schedules something else than an operator means."""
    return len(expression.split()) == 5 and bool(croniter.is_valid(expression))


def next_window_start(window: Window, now: datetime) -> datetime:
    """When the window next opens after `now` (now itself if it is open)."""
    if window.contains(now):
        return now
    zone = ZoneInfo(window.tz)
    local = now.astimezone(zone)
    opening = datetime.combine(local.date(), window.start, tzinfo=zone)
    if opening <= local:
        opening += timedelta(days=1)
    return opening.astimezone(now.tzinfo)


def next_pacing_slot(now: datetime, recent_sends: Sequence[datetime], max_per_minute: int) -> datetime:
    """When the next notice may leave under pacing: as the oldest send in the window drops out of it."""
    in_window = sorted(sent for sent in recent_sends if now - sent < PACING_WINDOW)
    if len(in_window) < max_per_minute:
        return now
    return in_window[len(in_window) - max_per_minute] + PACING_WINDOW
