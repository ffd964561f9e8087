"""Campaigns: who gets a package, when, how fast, and each device's attempt.

`advance` is the one step of the rollout engine. It runs after every operator action and on every
engine tick, always inside a transaction, and it is idempotent: running it twice, or on two
replicas, sends no notice twice because each notice follows a committed pending → notified change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.campaigns import policy
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.schemas import CampaignCreate, CampaignDeviceOut, CampaignOut
from skylift.campaigns.state import (
    FINAL,
    IN_PROGRESS,
    RETRYABLE,
    Attempt,
    Canceled,
    DeviceState,
    Event,
    NoticeSent,
    Notified,
    RetryRequested,
    TimedOut,
    Unreachable,
    transition,
)
from skylift.devices.notices import Notifier
from skylift.kit.errors import Conflict, Invalid, NotFound
from skylift.kit.versions import same_version
from skylift.packages import service as packages
from skylift.packages.models import Package
from skylift.packages.schemas import VerificationOut
from skylift.registry.models import Device, DeviceVersion

IN_PROGRESS_STATES = [s.value for s in IN_PROGRESS]
OPEN_STATES = [DeviceState.PENDING.value, *IN_PROGRESS_STATES]
FINAL_STATES = [s.value for s in FINAL]
ACTIVE_CAMPAIGN_STATES = ("scheduled", "running", "paused")
CLOSED_CAMPAIGN_STATES = ("finished", "canceled", "aborted")
APPROVAL_PREFIX = "waiting for approval"

# Whether a device has subscribed to its upgrade topic on this server (it can hear a notice now).
ReadyCheck = Callable[[int], bool]


async def _pairs(session: AsyncSession, query: Select[Any, Any]) -> dict[Any, Any]:
    """A two-column query as a dict (first column → second)."""
    return {key: value for key, value in (await session.execute(query)).tuples()}


def apply_event(attempt: CampaignDevice, event: Event, now: datetime) -> bool:
    """Run the state machine on one attempt row at `now`; True when it changed."""
    before = Attempt(
        state=DeviceState(attempt.state),
        progress=attempt.progress,
        step_desc=attempt.step_desc,
        failure_reason=attempt.failure_reason,
        attempts=attempt.attempts,
        awaiting_version_report=attempt.awaiting_version_report,
        redeliver=attempt.redeliver,
    )
    after = transition(before, event)
    if after is before:
        return False
    attempt.state = after.state.value
    attempt.progress = after.progress
    attempt.step_desc = after.step_desc
    attempt.failure_reason = after.failure_reason
    attempt.attempts = after.attempts
    attempt.awaiting_version_report = after.awaiting_version_report
    attempt.redeliver = after.redeliver
    attempt.updated_at = now
    if isinstance(event, Notified):
        attempt.notified_at = now
    attempt.finished_at = now if after.state in FINAL else None
    return True


# --- targets and admission -------------------------------------------------------------------------


def _matches_target(campaign: Campaign, device: Device, reported: str | None) -> bool:
    target = campaign.target or {"all": True}
    if target.get("device_ids") and device.id not in target["device_ids"]:
        return False
    if target.get("tags") and not set(target["tags"]) & set(device.tags or []):
        return False
    if target.get("percent") and not policy.in_share(device.product_id, device.id, float(target["percent"])):
        return False
    if campaign.source_versions:
        return reported is not None and any(same_version(reported, v) for v in campaign.source_versions)
    return True


async def admit(session: AsyncSession, campaign: Campaign, package: Package, now: datetime) -> list[CampaignDevice]:
    """Add the product's devices that match the campaign and are not in it yet.

    Devices already on the target version are recorded as skipped. The rest are ordered by a stable
    pseudo-random rank and split into the staged groups; late arrivals join the group being rolled out.
    """
    known = select(CampaignDevice.device_id).where(CampaignDevice.campaign_id == campaign.id)
    candidates = list(
        (
            await session.scalars(
                select(Device)
                .where(Device.product_id == campaign.product_id, Device.id.not_in(known))
                .options(selectinload(Device.product))
            )
        ).all()
    )
    if not candidates:
        return []
    reported: dict[int, str] = await _pairs(
        session,
        select(DeviceVersion.device_id, DeviceVersion.version).where(
            DeviceVersion.device_id.in_([d.id for d in candidates]), DeviceVersion.module == package.module
        ),
    )
    matching = [d for d in candidates if _matches_target(campaign, d, reported.get(d.id))]
    matching.sort(key=lambda d: policy.stable_share(d.product_id, d.id))
    first_admission = campaign.started_at is None and not await _has_attempts(session, campaign)
    rank = await next_rank(session, campaign)
    to_roll = [d for d in matching if not _on_target(reported.get(d.id), package)]
    bounds = policy.group_bounds(len(to_roll), campaign.groups or [100])
    added: list[CampaignDevice] = []
    position = 0
    for device in matching:
        attempt = new_attempt(campaign, package, device.id, rank)
        if _on_target(reported.get(device.id), package):
            attempt.state = DeviceState.SKIPPED.value
            attempt.step_desc = f"already on {reported[device.id]}"
            attempt.finished_at = now
        elif first_admission:
            attempt.group_index = policy.group_index(position, bounds)
            position += 1
        else:
            attempt.group_index = campaign.current_group
        attempt.device = device
        rank += 1
        added.append(attempt)
    session.add_all(added)
    await session.flush()
    return added


async def next_rank(session: AsyncSession, campaign: Campaign) -> int:
    """The rollout-order place of the next device to join the campaign."""
    return int(await session.scalar(select(func.count()).where(CampaignDevice.campaign_id == campaign.id)) or 0)


def new_attempt(
    campaign: Campaign, package: Package, device_id: int, rank: int, group_index: int = 0
) -> CampaignDevice:
    """A device's pending attempt at the campaign's package, not yet added to the session."""
    return CampaignDevice(
        campaign_id=campaign.id,
        device_id=device_id,
        module=package.module,
        target_version=package.version,
        state=DeviceState.PENDING.value,
        rank=rank,
        group_index=group_index,
        progress=0,
        step_desc="",
        attempts=0,
        awaiting_version_report=False,
        redeliver=False,
    )


def _on_target(reported: str | None, package: Package) -> bool:
    return reported is not None and same_version(reported, package.version)


async def _has_attempts(session: AsyncSession, campaign: Campaign) -> bool:
    found = await session.scalar(select(CampaignDevice.id).where(CampaignDevice.campaign_id == campaign.id).limit(1))
    return found is not None


# --- creation ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    state: str  # unverified | verifying | verified | failed
    campaign_id: int | None
    succeeded: int
    targeted: int


async def verification_of(session: AsyncSession, package: Package) -> Verification:
    """A package is verified once a verify campaign on it has succeeded on every one of its devices."""
    verify_campaigns = list(
        (
            await session.scalars(
                select(Campaign)
                .where(Campaign.package_id == package.id, Campaign.type == "verify")
                .order_by(Campaign.id.desc())
            )
        ).all()
    )
    if not verify_campaigns:
        return Verification("unverified", None, 0, 0)
    latest: Verification | None = None
    for campaign in verify_campaigns:
        counts = await state_counts(session, campaign.id)
        targeted = sum(n for state, n in counts.items() if state != DeviceState.SKIPPED)
        succeeded = counts.get(DeviceState.SUCCEEDED, 0)
        if targeted and succeeded == targeted:
            return Verification("verified", campaign.id, succeeded, targeted)
        if latest is None:
            state = "verifying" if campaign.state in ACTIVE_CAMPAIGN_STATES else "failed"
            latest = Verification(state, campaign.id, succeeded, targeted)
    assert latest is not None
    return latest


async def verification_out(session: AsyncSession, package: Package) -> VerificationOut:
    """The package's verification state, as the packages API shows it."""
    return VerificationOut(**dataclasses.asdict(await verification_of(session, package)))


async def create_campaign(
    session: AsyncSession, notifier: Notifier, data: CampaignCreate, is_ready: ReadyCheck, now: datetime
) -> Campaign:
    package = await packages.get_package(session, data.package_id)
    if not package.enabled:
        raise Conflict(f"package {package.id} is disabled", field="package_id")
    if data.type == "upgrade" and package.verify_required:
        verification = await verification_of(session, package)
        if verification.state != "verified":
            raise Conflict(
                f"package {package.id} must pass verification before it is rolled out "
                f"(verification is {verification.state}); run a verify campaign on a few devices first",
                field="package_id",
            )
    if not notifier.supports(data.protocol):
        raise Invalid("https downloads need SKYLIFT_PUBLIC_HTTPS_URL to be configured", field="protocol")
    target = data.resolved_target()
    if target.device_ids:
        await _check_devices_exist(session, package.product_id, target.device_ids)
    schedule = data.schedule
    campaign = Campaign(
        product_id=package.product_id,
        package_id=package.id,
        name=data.name,
        type=data.type,
        protocol=data.protocol,
        mode=data.mode,
        push=data.push,
        offline=data.offline,
        target=target.model_dump(exclude_none=True),
        source_versions=data.source_versions,
        ext_data=data.ext_data,
        start_at=schedule.start_at if schedule else None,
        cron=schedule.cron if schedule else None,
        end_at=schedule.end_at if schedule else None,
        window=schedule.window.model_dump(mode="json") if schedule and schedule.window else None,
        groups=data.groups,
        success_threshold=data.success_threshold,
        approval_required=data.approval_required,
        error_threshold=data.error_threshold.model_dump(exclude_none=True) if data.error_threshold else None,
        min_finished=data.min_finished,
        on_error=data.on_error,
        max_per_minute=data.max_per_minute,
        timeout_minutes=data.timeout_minutes,
        retry_count=data.retry_count,
        retry_interval_minutes=data.retry_interval_minutes,
        state="scheduled",
    )
    if campaign.cron:
        campaign.next_run_at = policy.next_cron_run(campaign.cron, max(now, campaign.start_at or now) - _TICK)
    campaign.package = package
    session.add(campaign)
    await session.flush()
    if not campaign.cron:
        # Static and dynamic campaigns take the devices that match now; cron runs take them at each run.
        admitted = await admit(session, campaign, package, now)
        if not admitted and data.mode == "static":
            raise Invalid("no device matches the campaign's targets", field="target")
    campaign.versions_before = await _versions_of(session, campaign, package)
    await advance(session, notifier, campaign, now, is_ready)
    return campaign


# A cron expression that fires "now" (this very minute) should run once right away.
_TICK = timedelta(seconds=60)


async def _check_devices_exist(session: AsyncSession, product_id: int, device_ids: Sequence[int]) -> None:
    found = set(
        (
            await session.scalars(select(Device.id).where(Device.product_id == product_id, Device.id.in_(device_ids)))
        ).all()
    )
    missing = sorted(set(device_ids) - found)
    if missing:
        raise Invalid(f"devices {missing} do not exist in product {product_id}", field="device_ids")


async def _versions_of(session: AsyncSession, campaign: Campaign, package: Package) -> dict[str, int]:
    rows = await session.execute(
        select(DeviceVersion.version, func.count())
        .join(CampaignDevice, CampaignDevice.device_id == DeviceVersion.device_id)
        .where(CampaignDevice.campaign_id == campaign.id, DeviceVersion.module == package.module)
        .group_by(DeviceVersion.version)
    )
    return {version: count for version, count in rows.tuples()}


# --- the engine step ------------------------------------------------------------------------------------


async def advance(
    session: AsyncSession,
    notifier: Notifier,
    campaign: Campaign,
    now: datetime,
    is_ready: ReadyCheck,
    housekeeping: bool = True,
) -> None:
    """Bring one campaign up to date: start, admit, time out, retry, judge thresholds, notify, finish.

    Without `housekeeping` (a device just finished an attempt) admission, timeouts and retries are
    left to the engine's next tick, so that a device message costs a few queries, not a fleet scan.
    """
    if campaign.state in CLOSED_CAMPAIGN_STATES:
        return
    package = campaign.package
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
        await _notify_pending(session, notifier, campaign, package, now, is_ready)
    if campaign.state in ("running", "paused"):
        await _redeliver(session, notifier, campaign, package, now, is_ready)
    await _finish_if_done(session, campaign, now)


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


async def _attempts_where(
    session: AsyncSession, campaign: Campaign, *conditions: Any, claim: bool = False
) -> list[CampaignDevice]:
    """Attempts of the campaign; with `claim`, rows another replica is working on are skipped."""
    query = (
        select(CampaignDevice)
        .where(CampaignDevice.campaign_id == campaign.id, *conditions)
        .options(selectinload(CampaignDevice.device).selectinload(Device.product))
        .order_by(CampaignDevice.rank)
    )
    if claim and session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True, of=CampaignDevice)
    return list((await session.scalars(query)).all())


async def _time_out(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.timeout_minutes is None:
        return
    quiet_since = now - timedelta(minutes=campaign.timeout_minutes)
    for attempt in await _attempts_where(
        session, campaign, CampaignDevice.state.in_(IN_PROGRESS_STATES), CampaignDevice.updated_at <= quiet_since
    ):
        apply_event(attempt, TimedOut(), now)


async def _retry_due(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
    if campaign.retry_count <= 0:
        return
    failed = await _attempts_where(
        session,
        campaign,
        CampaignDevice.state == DeviceState.FAILED.value,
        CampaignDevice.attempts <= campaign.retry_count,
    )
    for attempt in failed:
        failed_at = attempt.finished_at or attempt.updated_at
        if policy.retry_due(attempt.attempts, campaign.retry_count, failed_at, now, campaign.retry_interval_minutes):
            apply_event(attempt, RetryRequested(), now)


async def _tallies(session: AsyncSession, campaign: Campaign) -> policy.ErrorTally:
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
    tally = await _tallies(session, campaign)
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
    counts: dict[str, int] = await _pairs(
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


async def _notify_pending(
    session: AsyncSession,
    notifier: Notifier,
    campaign: Campaign,
    package: Package,
    now: datetime,
    is_ready: ReadyCheck,
) -> None:
    if _ended(campaign, now):
        return
    if campaign.window and not policy.Window(
        start=datetime.strptime(campaign.window["start"][:5], "%H:%M").time(),
        end=datetime.strptime(campaign.window["end"][:5], "%H:%M").time(),
        tz=campaign.window.get("tz", "UTC"),
    ).contains(now):
        return
    allowance = await _pacing_allowance(session, campaign, now)
    pending = await _attempts_where(
        session,
        campaign,
        CampaignDevice.state == DeviceState.PENDING.value,
        CampaignDevice.group_index <= campaign.current_group,
        claim=True,
    )
    for attempt in pending:
        if allowance is not None and allowance <= 0:
            return
        device = attempt.device
        if campaign.offline == "deliver_on_connect":
            # Only a device that has subscribed can hear the notice; the others get it when they do.
            if not (device.online and is_ready(device.id)):
                continue
        elif not device.online:
            apply_event(attempt, Unreachable(), now)
            continue
        if apply_event(attempt, Notified(), now):
            await session.flush()
            notifier.queue(session, device, device.product, notifier.compose(campaign, package, attempt))
            if allowance is not None:
                allowance -= 1


async def _redeliver(
    session: AsyncSession,
    notifier: Notifier,
    campaign: Campaign,
    package: Package,
    now: datetime,
    is_ready: ReadyCheck,
) -> None:
    """Send the notice again to devices that restarted after it, once they can hear it."""
    due = await _attempts_where(
        session,
        campaign,
        CampaignDevice.redeliver.is_(True),
        CampaignDevice.state.in_(IN_PROGRESS_STATES),
        claim=True,
    )
    for attempt in due:
        device = attempt.device
        if device.online and is_ready(device.id) and apply_event(attempt, NoticeSent(), now):
            await session.flush()
            notifier.queue(session, device, device.product, notifier.compose(campaign, package, attempt))


async def _pacing_allowance(session: AsyncSession, campaign: Campaign, now: datetime) -> int | None:
    """How many notices may leave now; None (unpaced) costs no query."""
    if campaign.max_per_minute is None:
        return None
    recent = await session.scalars(
        select(CampaignDevice.notified_at).where(
            CampaignDevice.campaign_id == campaign.id,
            CampaignDevice.notified_at > now - policy.PACING_WINDOW,
        )
    )
    return policy.notices_allowed(now, [t for t in recent if t is not None], campaign.max_per_minute)


async def _finish_if_done(session: AsyncSession, campaign: Campaign, now: datetime) -> None:
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
    for attempt in await _attempts_where(session, campaign, CampaignDevice.state == DeviceState.PENDING.value):
        apply_event(attempt, Canceled(), now)
    campaign.state, campaign.paused_reason = state, reason
    campaign.finished_at = campaign.finished_at or now


# --- operator actions ------------------------------------------------------------------------------------


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.scalar(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .options(selectinload(Campaign.package).selectinload(Package.files))
    )
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist", field="id")
    return campaign


async def _selected(session: AsyncSession, campaign: Campaign, device_ids: Sequence[int]) -> list[CampaignDevice]:
    attempts = await _attempts_where(session, campaign, CampaignDevice.device_id.in_(device_ids))
    missing = sorted(set(device_ids) - {a.device_id for a in attempts})
    if missing:
        raise Invalid(f"devices {missing} are not in campaign {campaign.id}", field="device_ids")
    return attempts


def _reopen(campaign: Campaign) -> None:
    if campaign.state == "finished":
        campaign.state, campaign.finished_at = "running", None


async def retry(
    session: AsyncSession,
    notifier: Notifier,
    campaign_id: int,
    device_ids: Sequence[int] | None,
    is_ready: ReadyCheck,
    now: datetime,
) -> Campaign:
    """Retry every failed device, or the listed failed or canceled ones; notices follow the pacing."""
    campaign = await get_campaign(session, campaign_id)
    if campaign.state in ("canceled", "aborted"):
        raise Conflict(f"campaign {campaign.id} is {campaign.state}", field="id")
    if device_ids is None:
        attempts = await _attempts_where(session, campaign, CampaignDevice.state == DeviceState.FAILED.value)
    else:
        attempts = await _selected(session, campaign, device_ids)
        stuck = [a.device_id for a in attempts if DeviceState(a.state) not in RETRYABLE]
        if stuck:
            raise Conflict(f"devices {stuck} have not failed or been canceled", field="device_ids")
    for attempt in attempts:
        apply_event(attempt, RetryRequested(), now)
        # A retried device belongs to a group already rolled out, so the retry goes out now.
        attempt.group_index = min(attempt.group_index, campaign.current_group)
    _reopen(campaign)
    await advance(session, notifier, campaign, now, is_ready)
    return campaign


async def cancel(session: AsyncSession, campaign_id: int, device_ids: Sequence[int] | None, now: datetime) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if device_ids is None:
        if campaign.state in CLOSED_CAMPAIGN_STATES and campaign.state != "finished":
            raise Conflict(f"campaign {campaign.id} is already {campaign.state}", field="id")
        for attempt in await _attempts_where(session, campaign, CampaignDevice.state.in_(OPEN_STATES)):
            apply_event(attempt, Canceled(), now)
        campaign.state, campaign.paused_reason = "canceled", None
        campaign.finished_at = campaign.finished_at or now
        return campaign
    for attempt in await _selected(session, campaign, device_ids):
        apply_event(attempt, Canceled(), now)
    await _finish_if_done(session, campaign, now)
    return campaign


async def pause(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if campaign.state not in ("scheduled", "running"):
        raise Conflict(f"only a scheduled or running campaign can be paused; this one is {campaign.state}", field="id")
    campaign.state, campaign.paused_reason = "paused", "paused by an operator"
    return campaign


async def resume(
    session: AsyncSession, notifier: Notifier, campaign_id: int, is_ready: ReadyCheck, now: datetime
) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if campaign.state != "paused":
        raise Conflict(f"only a paused campaign can be resumed; this one is {campaign.state}", field="id")
    if (campaign.paused_reason or "").startswith(APPROVAL_PREFIX):
        raise Conflict("this campaign waits for approval of its next group: approve it instead", field="id")
    # Failures seen so far are acknowledged: the error threshold judges only what happens next.
    tally = await _tallies(session, campaign)
    campaign.acknowledged_failed, campaign.acknowledged_finished = tally.failed, tally.finished
    campaign.state = "running" if campaign.started_at else "scheduled"
    campaign.paused_reason = None
    await advance(session, notifier, campaign, now, is_ready)
    return campaign


async def approve(
    session: AsyncSession, notifier: Notifier, campaign_id: int, is_ready: ReadyCheck, now: datetime
) -> Campaign:
    """Start the next group now (whether or not the current one reached its success threshold)."""
    campaign = await get_campaign(session, campaign_id)
    awaiting = campaign.state == "paused" and (campaign.paused_reason or "").startswith(APPROVAL_PREFIX)
    if not (awaiting or campaign.state == "running"):
        raise Conflict(f"there is no group to approve in a {campaign.state} campaign", field="id")
    if campaign.current_group >= group_count(campaign) - 1:
        raise Conflict("every group has already started", field="id")
    campaign.current_group += 1
    campaign.state, campaign.paused_reason = "running", None
    await advance(session, notifier, campaign, now, is_ready)
    return campaign


# --- reading -------------------------------------------------------------------------------------------


async def state_counts(session: AsyncSession, campaign_id: int) -> dict[str, int]:
    return await _pairs(
        session,
        select(CampaignDevice.state, func.count())
        .where(CampaignDevice.campaign_id == campaign_id)
        .group_by(CampaignDevice.state),
    )


async def failure_reasons(session: AsyncSession, campaign_ids: Sequence[int]) -> dict[str, int]:
    reasons: dict[str | None, int] = await _pairs(
        session,
        select(CampaignDevice.failure_reason, func.count())
        .where(CampaignDevice.campaign_id.in_(campaign_ids), CampaignDevice.state == DeviceState.FAILED)
        .group_by(CampaignDevice.failure_reason),
    )
    return {reason or "unknown": n for reason, n in reasons.items()}


def success_rate(counts: dict[str, int]) -> tuple[int, float]:
    targeted = sum(n for state, n in counts.items() if state != DeviceState.SKIPPED)
    rate = round(counts.get(DeviceState.SUCCEEDED, 0) / targeted, 4) if targeted else 0.0
    return targeted, rate


async def campaign_out(session: AsyncSession, campaign: Campaign) -> CampaignOut:
    counts = await state_counts(session, campaign.id)
    targeted, rate = success_rate(counts)
    schedule: dict[str, object] = {
        "start_at": campaign.start_at,
        "cron": campaign.cron,
        "end_at": campaign.end_at,
        "window": campaign.window,
    }
    return CampaignOut(
        id=campaign.id,
        name=campaign.name,
        type=campaign.type,
        product_id=campaign.product_id,
        package_id=campaign.package_id,
        version=campaign.package.version,
        module=campaign.package.module,
        protocol=campaign.protocol,
        mode=campaign.mode,
        push=campaign.push,
        offline=campaign.offline,
        target=dict(campaign.target or {}),
        source_versions=list(campaign.source_versions or []),
        schedule={k: v for k, v in schedule.items() if v is not None},
        groups=list(campaign.groups or []),
        current_group=campaign.current_group,
        success_threshold=campaign.success_threshold,
        approval_required=campaign.approval_required,
        error_threshold=campaign.error_threshold,
        min_finished=campaign.min_finished,
        on_error=campaign.on_error,
        max_per_minute=campaign.max_per_minute,
        timeout_minutes=campaign.timeout_minutes,
        retry_count=campaign.retry_count,
        retry_interval_minutes=campaign.retry_interval_minutes,
        ext_data=dict(campaign.ext_data or {}),
        state=campaign.state,
        paused_reason=campaign.paused_reason,
        targeted=targeted,
        counts=counts,
        success_rate=rate,
        failure_reasons=await failure_reasons(session, [campaign.id]),
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        next_run_at=campaign.next_run_at,
        finished_at=campaign.finished_at,
    )


async def list_campaigns(session: AsyncSession, product_id: int | None, package_id: int | None) -> list[Campaign]:
    query = select(Campaign).options(selectinload(Campaign.package)).order_by(Campaign.id)
    if product_id is not None:
        query = query.where(Campaign.product_id == product_id)
    if package_id is not None:
        query = query.where(Campaign.package_id == package_id)
    return list((await session.scalars(query)).all())


async def device_rows(session: AsyncSession, campaign_id: int) -> list[CampaignDeviceOut]:
    campaign = await get_campaign(session, campaign_id)
    return [
        CampaignDeviceOut(
            device_id=a.device_id,
            device_name=a.device.name,
            module=a.module,
            target_version=a.target_version,
            state=a.state,
            group=a.group_index,
            progress=a.progress,
            step_desc=a.step_desc,
            failure_reason=a.failure_reason,
            attempts=a.attempts,
            notified_at=a.notified_at,
            finished_at=a.finished_at,
            updated_at=a.updated_at,
        )
        for a in await _attempts_where(session, campaign)
    ]
