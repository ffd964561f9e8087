"""Campaigns: who gets a package, the notices, and each device's attempt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

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
    Notified,
    RetryRequested,
    Unreachable,
    transition,
)
from skylift.db.base import utcnow
from skylift.devices.notices import Notifier
from skylift.kit.errors import Conflict, Invalid, NotFound
from skylift.kit.versions import same_version
from skylift.packages import service as packages
from skylift.packages.models import Package
from skylift.registry.models import Device, DeviceVersion

OPEN_STATES = [DeviceState.PENDING.value, *(s.value for s in IN_PROGRESS)]


async def _pairs(session: AsyncSession, query: Select[Any, Any]) -> dict[Any, Any]:
    """A two-column query as a dict (first column → second)."""
    return {key: value for key, value in (await session.execute(query)).tuples()}


def apply_event(attempt: CampaignDevice, event: Event) -> bool:
    """Run the state machine on one attempt row; True when it changed."""
    before = Attempt(
        state=DeviceState(attempt.state),
        progress=attempt.progress,
        step_desc=attempt.step_desc,
        failure_reason=attempt.failure_reason,
        attempts=attempt.attempts,
        awaiting_version_report=attempt.awaiting_version_report,
    )
    after = transition(before, event)
    if after is before:
        return False
    now = utcnow()
    attempt.state = after.state.value
    attempt.progress = after.progress
    attempt.step_desc = after.step_desc
    attempt.failure_reason = after.failure_reason
    attempt.attempts = after.attempts
    attempt.awaiting_version_report = after.awaiting_version_report
    attempt.updated_at = now
    if isinstance(event, Notified):
        attempt.notified_at = now
    attempt.finished_at = now if after.state in FINAL else None
    return True


async def refresh_state(session: AsyncSession, campaign: Campaign) -> None:
    """A running campaign finishes when no attempt is pending or under way; a retry reopens it."""
    if campaign.state not in ("running", "finished"):
        return
    await session.flush()
    open_count = await session.scalar(
        select(func.count())
        .select_from(CampaignDevice)
        .where(CampaignDevice.campaign_id == campaign.id, CampaignDevice.state.in_(OPEN_STATES))
    )
    if open_count:
        campaign.state, campaign.finished_at = "running", None
    elif campaign.state == "running":
        campaign.state, campaign.finished_at = "finished", utcnow()


async def deliver(
    session: AsyncSession, notifier: Notifier, campaign: Campaign, package: Package, attempt: CampaignDevice
) -> None:
    """Notify a pending device now, or fail the attempt as offline (retryable)."""
    device = attempt.device
    if not device.online:
        apply_event(attempt, Unreachable())
        return
    if apply_event(attempt, Notified()):
        await session.flush()
        notifier.queue(session, device, device.product, notifier.compose(campaign, package, attempt))


async def _targets(session: AsyncSession, data: CampaignCreate, package: Package) -> list[Device]:
    query = select(Device).where(Device.product_id == package.product_id).options(selectinload(Device.product))
    if data.device_ids is not None:
        query = query.where(Device.id.in_(data.device_ids))
    devices = list((await session.scalars(query.order_by(Device.id))).all())
    if data.device_ids is not None:
        missing = sorted(set(data.device_ids) - {d.id for d in devices})
        if missing:
            raise Invalid(f"devices {missing} do not exist in product {package.product_id}", field="device_ids")
    if data.source_versions:
        reported = dict(
            (
                await session.execute(
                    select(DeviceVersion.device_id, DeviceVersion.version).where(
                        DeviceVersion.device_id.in_([d.id for d in devices]),
                        DeviceVersion.module == package.module,
                    )
                )
            ).tuples()
        )
        devices = [
            d
            for d in devices
            if d.id in reported and any(same_version(reported[d.id], v) for v in data.source_versions)
        ]
    if not devices:
        raise Invalid("no device matches the campaign's targets", field="device_ids")
    return devices


async def create_campaign(session: AsyncSession, notifier: Notifier, data: CampaignCreate) -> Campaign:
    package = await packages.get_package(session, data.package_id)
    if not package.enabled:
        raise Conflict(f"package {package.id} is disabled", field="package_id")
    if not notifier.supports(data.protocol):
        raise Invalid("https downloads need SKYLIFT_PUBLIC_HTTPS_URL to be configured", field="protocol")
    devices = await _targets(session, data, package)
    campaign = Campaign(
        product_id=package.product_id,
        package_id=package.id,
        name=data.name,
        type=data.type,
        protocol=data.protocol,
        mode=data.mode,
        push=data.push,
        source_versions=data.source_versions,
        ext_data=data.ext_data,
        state="running",
    )
    campaign.package = package
    session.add(campaign)
    await session.flush()
    attempts = []
    for device in devices:
        attempt = CampaignDevice(
            campaign_id=campaign.id,
            device_id=device.id,
            module=package.module,
            target_version=package.version,
            state=DeviceState.PENDING.value,
        )
        attempt.device = device
        attempts.append(attempt)
    session.add_all(attempts)
    await session.flush()
    if data.push:
        for attempt in attempts:
            await deliver(session, notifier, campaign, package, attempt)
    await refresh_state(session, campaign)
    return campaign


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.scalar(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .options(selectinload(Campaign.package).selectinload(Package.files))
    )
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist", field="id")
    return campaign


async def _attempts(
    session: AsyncSession, campaign: Campaign, device_ids: Sequence[int] | None
) -> list[CampaignDevice]:
    query = (
        select(CampaignDevice)
        .where(CampaignDevice.campaign_id == campaign.id)
        .options(selectinload(CampaignDevice.device).selectinload(Device.product))
        .order_by(CampaignDevice.id)
    )
    if device_ids is not None:
        query = query.where(CampaignDevice.device_id.in_(device_ids))
    attempts = list((await session.scalars(query)).all())
    if device_ids is not None:
        missing = sorted(set(device_ids) - {a.device_id for a in attempts})
        if missing:
            raise Invalid(f"devices {missing} are not in campaign {campaign.id}", field="device_ids")
    return attempts


async def retry(
    session: AsyncSession, notifier: Notifier, campaign_id: int, device_ids: Sequence[int] | None
) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    if campaign.state == "canceled":
        raise Conflict(f"campaign {campaign.id} is canceled", field="id")
    attempts = await _attempts(session, campaign, device_ids)
    if device_ids is None:
        attempts = [a for a in attempts if a.state == DeviceState.FAILED]
    else:
        stuck = [a.device_id for a in attempts if DeviceState(a.state) not in RETRYABLE]
        if stuck:
            raise Conflict(f"devices {stuck} have not failed or been canceled", field="device_ids")
    for attempt in attempts:
        apply_event(attempt, RetryRequested())
        await deliver(session, notifier, campaign, campaign.package, attempt)
    await refresh_state(session, campaign)
    return campaign


async def cancel(session: AsyncSession, campaign_id: int, device_ids: Sequence[int] | None) -> Campaign:
    campaign = await get_campaign(session, campaign_id)
    for attempt in await _attempts(session, campaign, device_ids):
        apply_event(attempt, Canceled())
    if device_ids is None and campaign.state in ("running", "finished"):
        campaign.state = "canceled"
        campaign.finished_at = campaign.finished_at or utcnow()
    await refresh_state(session, campaign)
    return campaign


async def campaign_out(session: AsyncSession, campaign: Campaign) -> CampaignOut:
    counts: dict[str, int] = await _pairs(
        session,
        select(CampaignDevice.state, func.count())
        .where(CampaignDevice.campaign_id == campaign.id)
        .group_by(CampaignDevice.state),
    )
    reasons: dict[str | None, int] = await _pairs(
        session,
        select(CampaignDevice.failure_reason, func.count())
        .where(CampaignDevice.campaign_id == campaign.id, CampaignDevice.state == DeviceState.FAILED)
        .group_by(CampaignDevice.failure_reason),
    )
    targeted = sum(counts.values())
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
        source_versions=list(campaign.source_versions or []),
        ext_data=dict(campaign.ext_data or {}),
        state=campaign.state,
        targeted=targeted,
        counts=counts,
        success_rate=round(counts.get(DeviceState.SUCCEEDED, 0) / targeted, 4) if targeted else 0.0,
        failure_reasons={reason or "unknown": n for reason, n in reasons.items()},
        created_at=campaign.created_at,
        finished_at=campaign.finished_at,
    )


async def list_campaigns(session: AsyncSession, product_id: int | None) -> list[Campaign]:
    query = select(Campaign).options(selectinload(Campaign.package)).order_by(Campaign.id)
    if product_id is not None:
        query = query.where(Campaign.product_id == product_id)
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
            progress=a.progress,
            step_desc=a.step_desc,
            failure_reason=a.failure_reason,
            attempts=a.attempts,
            notified_at=a.notified_at,
            finished_at=a.finished_at,
            updated_at=a.updated_at,
        )
        for a in await _attempts(session, campaign, None)
    ]
