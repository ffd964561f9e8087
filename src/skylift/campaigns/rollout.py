"""The rollout engine's step: bring one campaign up to date, and let campaigns react to device reports.

`advance` runs after every operator action and on every engine tick, always inside a transaction, and
it is idempotent: running it twice, or on two replicas, sends no notice twice, because each notice is
an outbox row written with the pending → notified change of its attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import policy
from skylift.campaigns.admission import admit
from skylift.campaigns.attempts import apply_event, notify
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import (
    APPROVAL_PREFIX,
    CLOSED_CAMPAIGN_STATES,
    IN_PROGRESS_STATES,
    Reachability,
    attempts_where,
    get_campaign,
    pairs,
    pending_reachability,
)
from skylift.campaigns.state import Canceled, DeviceState, RetryRequested, TimedOut, Unreachable
from skylift.db.chunks import id_chunks
from skylift.db.session import savepoint
from skylift.packages.models import Package

log = logging.getLogger(__name__)

PACKAGE_DISABLED = "package disabled"


async def advance(session: AsyncSession, campaign: Campaign, now: datetime, housekeeping: bool = True) -> None:
    """Bring one campaign up to date: start, admit, time out, retry, judge thresholds, notify, finish.

    Without `housekeeping` (a device just finished an attempt) admission, timeouts and retries are
    left to the engine's next tick, so that a device message costs a few queries, not a fleet scan.
    """
    if campaign.state in CLOSED_CAMPAIGN_STATES:
        return
    package = campaign.package
    if not package.enabled:
        # Disabling a package stops its rollout (seed 003: 禁用); an operator resumes once it is enabled.
        if campaign.state in ("scheduled", "running"):
            campaign.state, campaign.paused_reason = "paused", PACKAGE_DISABLED
        return
    if campaign.state == "scheduled":
        due = campaign.start_at is None or campaign.start_at <= now
        if campaign.cron:
            due = due and campaign.next_run_at is not None and campaign.next_run_at <= now
        if not due:
            return
        campaign.state, campaign.started_at = "running", now
    if housekeeping:
        await _time_out(session, campaign, now)
    if campaign.state == "running":
        if housekeeping:
            await _admit_and_retry(session, campaign, package, now)
        if await _judge_errors(session, campaign, now):
            return
        await _advance_group(session, campaign)
    if campaign.state == "running" and campaign.push:
        await _notify_pending(session, campaign, now)
    await finish_if_done(session, campaign, now)


async def _admit_and_retry(session: AsyncSession, campaign: Campaign, package: Package, now: datetime) -> None:
    if campaign.cron and campaign.next_run_at is not None and campaign.next_run_at <= now:
        await admit(session, campaign, package, now)
        # Runs missed while the server was down collapse into this one run.
        campaign.next_run_at = policy.next_cron_run(campaign.cron, now)
    elif campaign.mode == "dynamic" and not _ended(campaign, now):
        await admit(session, campaign, package, now)
    await _retry_due(session, campaign, now)


def _ended(campaign: Campaign, now: datetime) -> bool:
    return campaign.end_at is not None and now >= campaign.end_at


async def _time_out(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.timeout_minutes is None:
        return
    quiet_since = now - timedelta(minutes=campaign.timeout_minutes)
    for attempt in await attempts_where(
        session, campaign, CampaignDevice.state.in_(IN_PROGRESS_STATES), CampaignDevice.updated_at <= quiet_since
    ):
        apply_event(attempt, TimedOut(), now)


async def _retry_due(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.retry_count <= 0:
        return
    failed = await attempts_where(
        session,
        campaign,
        CampaignDevice.state == DeviceState.FAILED.value,
        CampaignDevice.attempts <= campaign.retry_count,
    )
    for attempt in failed:
        failed_at = attempt.finished_at or attempt.updated_at
        if policy.retry_due(attempt.attempts, campaign.retry_count, failed_at, now, campaign.retry_interval_minutes):
            apply_event(attempt, RetryRequested(), now)


async def tallies(session: AsyncSession, campaign: Campaign) -> policy.ErrorTally:
    succeeded = await session.scalar(
        select(func.count()).where(
            CampaignDevice.campaign_id == campaign.id, CampaignDevice.state == DeviceState.SUCCEEDED.value
        )
    )
    failed = await session.scalar(
        select(func.count()).where(
            CampaignDevice.campaign_id == campaign.id,
            CampaignDevice.state == DeviceState.FAILED.value,
            CampaignDevice.attempts > campaign.retry_count,
        )
    )
    return policy.ErrorTally(finished=int(succeeded or 0) + int(failed or 0), failed=int(failed or 0))


async def _judge_errors(session: AsyncSession, campaign: Campaign, now: datetime) -> bool:
    """Pause or abort the campaign by itself when too many devices finally failed; True if it stopped."""
    if not campaign.error_threshold:
        return False
    tally = await tallies(session, campaign)
    since_resume = policy.ErrorTally(
        finished=tally.finished - campaign.acknowledged_finished, failed=tally.failed - campaign.acknowledged_failed
    )
    threshold = policy.ErrorThreshold(
        percent=campaign.error_threshold.get("percent"),
        count=int(campaign.error_threshold["count"]) if "count" in campaign.error_threshold else None,
    )
    reason = policy.error_trip_reason(since_resume, threshold, campaign.min_finished)
    if reason is None:
        return False
    if campaign.on_error == "abort":
        await _close(session, campaign, "aborted", reason, now)
    else:
        campaign.state, campaign.paused_reason = "paused", reason
    return True


async def _group_tally(session: AsyncSession, campaign: Campaign, group: int) -> policy.GroupTally:
    counts: dict[str, int] = await pairs(
        session,
        select(CampaignDevice.state, func.count())
        .where(CampaignDevice.campaign_id == campaign.id, CampaignDevice.group_index == group)
        .group_by(CampaignDevice.state),
    )
    size = sum(n for state, n in counts.items() if state != DeviceState.SKIPPED)
    return policy.GroupTally(size=size, succeeded=counts.get(DeviceState.SUCCEEDED, 0))


def group_count(campaign: Campaign) -> int:
    return max(1, len(campaign.groups or []))


async def _advance_group(session: AsyncSession, campaign: Campaign) -> None:
    if campaign.current_group >= group_count(campaign) - 1:
        return
    tally = await _group_tally(session, campaign, campaign.current_group)
    if not policy.group_succeeded(tally, campaign.success_threshold):
        return
    if campaign.approval_required:
        campaign.state = "paused"
        campaign.paused_reason = (
            f"{APPROVAL_PREFIX} to start group {campaign.current_group + 2} of {group_count(campaign)}"
        )
        return
    campaign.current_group += 1


async def _notify_pending(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if _ended(campaign, now):
        return
    window = _window(campaign)
    if window is not None and not window.contains(now):
        return
    allowance = await _pacing_allowance(session, campaign, now)
    hearing: list[Reachability] = []
    unreachable: list[int] = []
    for attempt in await pending_reachability(session, campaign):
        if allowance is not None and len(hearing) >= allowance:
            break
        if campaign.offline == "deliver_on_connect":
            # Only a device that listens can hear the notice; the others get it when they do.
            if not (attempt.online and attempt.listening):
                continue
        elif not attempt.online:
            unreachable.append(attempt.id)
            continue
        # The outbox row waits until the device listens (a device that just connected subscribes next).
        hearing.append(attempt)
    for chunk in id_chunks(unreachable):
        for offline in await attempts_where(session, campaign, CampaignDevice.id.in_(chunk)):
            apply_event(offline, Unreachable(), now)
    await notify(session, hearing, now)


def _window(campaign: Campaign) -> policy.Window | None:
    if not campaign.window:
        return None
    return policy.Window(
        start=datetime.strptime(campaign.window["start"][:5], "%H:%M").time(),
        end=datetime.strptime(campaign.window["end"][:5], "%H:%M").time(),
        tz=campaign.window.get("tz", "UTC"),
    )


@dataclass(frozen=True)
class Wait:
    """Why a campaign sends no notice now and when it next may; both None when nothing holds it back."""

    reason: str | None = None
    until: datetime | None = None


async def waiting(session: AsyncSession, campaigns: Sequence[Campaign], now: datetime) -> dict[int, Wait]:
    """Why each campaign sends no notice now, by campaign id, in a query or two for all of them."""
    waits = {c.id: _held_by_schedule(c, now) for c in campaigns}
    pushing = [c for c in campaigns if waits[c.id] is None and c.state == "running" and c.push]
    pending = await _pending_in_reach(session, pushing)
    paced: list[Campaign] = []
    for campaign in pushing:
        window = _window(campaign)
        if not pending.get(campaign.id):
            waits[campaign.id] = Wait()
        elif window is not None and not window.contains(now):
            zone = f"{window.start:%H:%M}–{window.end:%H:%M} {window.tz}"
            waits[campaign.id] = Wait(f"outside its window {zone}", policy.next_window_start(window, now))
        elif campaign.max_per_minute is not None:
            paced.append(campaign)
        else:
            waits[campaign.id] = Wait()
    recent = await _recent_notices_of(session, [c.id for c in paced], now)
    for campaign in paced:
        sent = recent.get(campaign.id, [])
        limit = campaign.max_per_minute
        assert limit is not None
        if policy.notices_allowed(now, sent, limit) == 0:
            slot = policy.next_pacing_slot(now, sent, limit)
            waits[campaign.id] = Wait(f"pacing: at most {limit} notices a minute", slot)
        else:
            waits[campaign.id] = Wait()
    return {key: wait or Wait() for key, wait in waits.items()}


def _held_by_schedule(campaign: Campaign, now: datetime) -> Wait | None:
    """The wait that the campaign's state and schedule alone decide, or None when its devices decide."""
    if campaign.state == "paused":
        return Wait(campaign.paused_reason)
    if campaign.state == "scheduled":
        if campaign.start_at is not None and campaign.start_at > now:
            return Wait("waiting for its start time", campaign.start_at)
        if campaign.cron and campaign.next_run_at is not None:
            return Wait("waiting for its next scheduled run", campaign.next_run_at)
    if campaign.state != "running" or not campaign.push:
        return Wait()
    if campaign.cron and campaign.next_run_at is not None and campaign.next_run_at > now:
        return Wait("waiting for its next scheduled run", campaign.next_run_at)
    return None


async def _pending_in_reach(session: AsyncSession, campaigns: Sequence[Campaign]) -> dict[int, int]:
    """Pending attempts in each campaign's groups up to its current one, by campaign id."""
    reach = {c.id: c.current_group for c in campaigns}
    found: dict[int, int] = {}
    for chunk in id_chunks(list(reach)):
        rows = await session.execute(
            select(CampaignDevice.campaign_id, CampaignDevice.group_index, func.count())
            .where(CampaignDevice.campaign_id.in_(chunk), CampaignDevice.state == DeviceState.PENDING.value)
            .group_by(CampaignDevice.campaign_id, CampaignDevice.group_index)
        )
        for campaign_id, group, count in rows.tuples():
            if group <= reach[campaign_id]:
                found[campaign_id] = found.get(campaign_id, 0) + count
    return found


async def _recent_notices_of(
    session: AsyncSession, campaign_ids: Sequence[int], now: datetime
) -> dict[int, list[datetime]]:
    """When each campaign's notices inside the pacing window went out, by campaign id."""
    sent: dict[int, list[datetime]] = {}
    for chunk in id_chunks(campaign_ids):
        rows = await session.execute(
            select(CampaignDevice.campaign_id, CampaignDevice.notified_at).where(
                CampaignDevice.campaign_id.in_(chunk), CampaignDevice.notified_at > now - policy.PACING_WINDOW
            )
        )
        for campaign_id, notified_at in rows.tuples():
            if notified_at is not None:
                sent.setdefault(campaign_id, []).append(notified_at)
    return sent


async def _pacing_allowance(session: AsyncSession, campaign: Campaign, now: datetime) -> int | None:
    """How many notices may leave now; None (unpaced) costs no query."""
    if campaign.max_per_minute is None:
        return None
    recent = await _recent_notices_of(session, [campaign.id], now)
    return policy.notices_allowed(now, recent.get(campaign.id, []), campaign.max_per_minute)


async def finish_if_done(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.state != "running":
        return
    await session.flush()
    in_flight = await session.scalar(
        select(func.count()).where(
            CampaignDevice.campaign_id == campaign.id, CampaignDevice.state.in_(IN_PROGRESS_STATES)
        )
    )
    if _ended(campaign, now):
        if not in_flight:
            await _close(session, campaign, "finished", None, now)
        return
    if campaign.cron or campaign.mode == "dynamic":
        return  # open-ended: it keeps taking devices until its end time or an operator stops it
    if campaign.current_group < group_count(campaign) - 1:
        return
    waiting = await session.scalar(
        select(func.count()).where(
            CampaignDevice.campaign_id == campaign.id,
            (CampaignDevice.state == DeviceState.PENDING.value)
            | ((CampaignDevice.state == DeviceState.FAILED.value) & (CampaignDevice.attempts <= campaign.retry_count)),
        )
    )
    if not in_flight and not waiting:
        campaign.state, campaign.finished_at = "finished", now


async def _close(session: AsyncSession, campaign: Campaign, state: str, reason: str | None, now: datetime) -> None:
    """End a campaign: devices still waiting for their notice are canceled."""
    for attempt in await attempts_where(session, campaign, CampaignDevice.state == DeviceState.PENDING.value):
        apply_event(attempt, Canceled(), now)
    campaign.state, campaign.paused_reason = state, reason
    campaign.finished_at = campaign.finished_at or now


async def settle(session: AsyncSession, campaign_ids: set[int], now: datetime) -> None:
    """Let the campaigns a device report moved react at once (finish, next group, thresholds).

    Each campaign reacts in a savepoint: an error in one leaves the device's report standing and the
    other campaigns reacting; the engine's next tick meets the error again and pauses that campaign."""
    for campaign_id in sorted(campaign_ids):
        try:
            async with savepoint(session):
                await advance(session, await get_campaign(session, campaign_id), now, housekeeping=False)
        except Exception:
            log.exception("campaign %s could not react to a device report", campaign_id)
