"""What operators do to campaigns: create one, retry, cancel, pause, resume, approve the next group.

Each action runs the engine's step at once, in the request's transaction, so its effect (notices
written to the outbox, a finished campaign) is committed with the 2xx.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import policy
from skylift.campaigns.admission import admit
from skylift.campaigns.attempts import apply_event
from skylift.campaigns.errors import CampaignConflict, CampaignInvalid
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import APPROVAL_PREFIX, CLOSED_CAMPAIGN_STATES, OPEN_STATES, attempts_where, get_campaign
from skylift.campaigns.results import verification_of
from skylift.campaigns.rollout import advance, finish_if_done, group_count, tallies
from skylift.campaigns.schemas import CampaignCreate
from skylift.campaigns.state import RETRYABLE, Canceled, DeviceState, RetryRequested
from skylift.packages import service as packages
from skylift.packages.models import Package
from skylift.registry.models import Device, DeviceVersion


async def create_campaign(
    session: AsyncSession, data: CampaignCreate, now: datetime, https_available: bool
) -> Campaign:
    """A new campaign; `https_available` says whether https download URLs can be made."""
    package = await packages.get_package(session, data.package_id)
    if not package.enabled:
        raise CampaignConflict(f"package {package.id} is disabled", field="package_id")
    if data.type == "upgrade" and package.verify_required:
        verification = await verification_of(session, package)
        if verification.state != "verified":
            raise CampaignConflict(
                f"package {package.id} must pass verification before it is rolled out "
                f"(verification is {verification.state}); run a verify campaign on a few devices first",
                field="package_id",
            )
    if data.protocol == "https" and not https_available:
        raise CampaignInvalid("https downloads need SKYLIFT_PUBLIC_HTTPS_URL to be configured", field="protocol")
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
        supersede=data.supersede,
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
            raise CampaignInvalid("no device matches the campaign's targets", field="target")
    campaign.versions_before = await _versions_of(session, campaign, package)
    await advance(session, campaign, now)
    return campaign


# A cron expression that fires "now" (this very minute) should run once right away.
_TICK = timedelta(seconds=60)


async def _check_devices_exist(session: AsyncSession, product_id: int, device_ids: Sequence[int]) -> None:
    found = set(
        (
            await session.scalars(
                select(Device.id).where(
                    Device.product_id == product_id, Device.deleted_at.is_(None), Device.id.in_(device_ids)
                )
            )
        ).all()
    )
    missing = sorted(set(device_ids) - found)
    if missing:
        raise CampaignInvalid(f"devices {missing} do not exist in product {product_id}", field="device_ids")


async def _versions_of(session: AsyncSession, campaign: Campaign, package: Package) -> dict[str, int]:
    rows = await session.execute(
        select(DeviceVersion.version, func.count())
        .join(CampaignDevice, CampaignDevice.device_id == DeviceVersion.device_id)
        .where(CampaignDevice.campaign_id == campaign.id, DeviceVersion.module == package.module)
        .group_by(DeviceVersion.version)
    )
    return {version: count for version, count in rows.tuples()}


async def _selected(session: AsyncSession, campaign: Campaign, device_ids: Sequence[int]) -> list[CampaignDevice]:
    attempts = await attempts_where(session, campaign, CampaignDevice.device_id.in_(device_ids))
    missing = sorted(set(device_ids) - {a.device_id for a in attempts})
    if missing:
        raise CampaignInvalid(f"devices {missing} are not in campaign {campaign.id}", field="device_ids")
    return attempts


def _reopen(campaign: Campaign) -> None:
    if campaign.state == "finished":
        campaign.state, campaign.finished_at = "running", None


async def retry(session: AsyncSession, campaign_id: int, device_ids: Sequence[int] | None, now: datetime) -> Campaign:
    """Retry every failed device, or the listed failed or canceled ones; notices follow the pacing."""
    campaign = await get_campaign(session, campaign_id)
    if campaign.state in ("canceled", "aborted"):
        raise CampaignConflict(f"campaign {campaign.id} is {campaign.state}", field="id")
    if device_ids is None:
        attempts = await attempts_where(session, campaign, CampaignDevice.state == DeviceState.FAILED.value)
    else:
        attempts = await _selected(session, campaign, device_ids)
        stuck = [a.device_id for a in attempts if DeviceState(a.state) not in RETRYABLE]
        if stuck:
            raise CampaignConflict(f"devices {stuck} have not failed or been canceled", field="device_ids")
    for attempt in attempts:
        apply_event(attempt, RetryRequested(), now)
        # A retried device belongs to a group already rolled out, so the retry goes out now.
        attempt.group_index = min(attempt.group_index, campaign.current_group)
    _reopen(campaign)
    await advance(session, campaign, now)
    return campaign


async def cancel(session: AsyncSession, campaign_id: int, device_ids: Sequence[int] | None, now: datetime) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if device_ids is None:
        if campaign.state in CLOSED_CAMPAIGN_STATES and campaign.state != "finished":
            raise CampaignConflict(f"campaign {campaign.id} is already {campaign.state}", field="id")
        for attempt in await attempts_where(session, campaign, CampaignDevice.state.in_(OPEN_STATES)):
            apply_event(attempt, Canceled(), now)
        campaign.state, campaign.paused_reason = "canceled", None
        campaign.finished_at = campaign.finished_at or now
        return campaign
    for attempt in await _selected(session, campaign, device_ids):
        apply_event(attempt, Canceled(), now)
    await finish_if_done(session, campaign, now)
    return campaign


async def pause(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if campaign.state not in ("scheduled", "running"):
        raise CampaignConflict(
            f"only a scheduled or running campaign can be paused; this one is {campaign.state}", field="id"
        )
    campaign.state, campaign.paused_reason = "paused", "paused by an operator"
    return campaign


async def resume(session: AsyncSession, campaign_id: int, now: datetime) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if campaign.state != "paused":
        raise CampaignConflict(f"only a paused campaign can be resumed; this one is {campaign.state}", field="id")
    if (campaign.paused_reason or "").startswith(APPROVAL_PREFIX):
        raise CampaignConflict("this campaign waits for approval of its next group: approve it instead", field="id")
    if not campaign.package.enabled:
        raise CampaignConflict(f"package {campaign.package_id} is disabled: enable it first", field="id")
    # Failures seen so far are acknowledged: the error threshold judges only what happens next.
    tally = await tallies(session, campaign)
    campaign.acknowledged_failed, campaign.acknowledged_finished = tally.failed, tally.finished
    campaign.state = "running" if campaign.started_at else "scheduled"
    campaign.paused_reason = None
    await advance(session, campaign, now)
    return campaign


async def approve(session: AsyncSession, campaign_id: int, now: datetime) -> Campaign:
    """Start the next group now (whether or not the current one reached its success threshold)."""
    campaign = await get_campaign(session, campaign_id)
    awaiting = campaign.state == "paused" and (campaign.paused_reason or "").startswith(APPROVAL_PREFIX)
    if not (awaiting or campaign.state == "running"):
        raise CampaignConflict(f"there is no group to approve in a {campaign.state} campaign", field="id")
    if campaign.current_group >= group_count(campaign) - 1:
        raise CampaignConflict("every group has already started", field="id")
    campaign.current_group += 1
    campaign.state, campaign.paused_reason = "running", None
    await advance(session, campaign, now)
    return campaign


async def package_switched(session: AsyncSession, package: Package, now: datetime) -> None:
    """A package was disabled (or enabled): its active campaigns react now, in the same transaction."""
    campaigns = await session.scalars(
        select(Campaign).where(Campaign.package_id == package.id, Campaign.state.in_(("scheduled", "running")))
    )
    for campaign in campaigns:
        campaign.package = package
        await advance(session, campaign, now)
