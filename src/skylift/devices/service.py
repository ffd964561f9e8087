"""What device reports do: record versions, move campaign attempts."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import service as campaigns
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.state import IN_PROGRESS, Downloaded, Progressed, VersionReported
from skylift.db.base import utcnow
from skylift.devices.dialects import base as events
from skylift.devices.identity import DeviceIdentity
from skylift.registry import service as registry
from skylift.registry.models import Device

IN_PROGRESS_STATES = [s.value for s in IN_PROGRESS]


async def _open_attempts(session: AsyncSession, device_id: int, module: str | None) -> list[CampaignDevice]:
    query = (
        select(CampaignDevice)
        .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
        .where(CampaignDevice.device_id == device_id, CampaignDevice.state.in_(IN_PROGRESS_STATES))
        # The attempt the device was notified for last comes first.
        .order_by(CampaignDevice.notified_at.desc(), CampaignDevice.id.desc())
    )
    if module is not None:
        query = query.where(CampaignDevice.module == registry.canonical_module(module))
    return list((await session.scalars(query)).all())


async def _settle(session: AsyncSession, attempt: CampaignDevice) -> None:
    campaign = await session.get(Campaign, attempt.campaign_id)
    if campaign is not None:
        await campaigns.refresh_state(session, campaign)


async def version_reported(session: AsyncSession, identity: DeviceIdentity, event: events.VersionReported) -> None:
    module = registry.canonical_module(event.module)
    await registry.record_version(session, identity.device_id, module, event.version)
    for attempt in await _open_attempts(session, identity.device_id, module):
        if campaigns.apply_event(attempt, VersionReported(event.version, attempt.target_version)):
            await _settle(session, attempt)


async def progress_reported(session: AsyncSession, identity: DeviceIdentity, event: events.ProgressReported) -> None:
    attempts = await _open_attempts(session, identity.device_id, event.module)
    if attempts and campaigns.apply_event(attempts[0], Progressed(event.step, event.desc)):
        await _settle(session, attempts[0])


async def download_finished(session: AsyncSession, attempt_id: int, attempt_number: int) -> None:
    attempt = await session.get(CampaignDevice, attempt_id)
    if attempt is not None and attempt.attempts == attempt_number:
        campaigns.apply_event(attempt, Downloaded())


async def handle(session: AsyncSession, identity: DeviceIdentity, event: events.DeviceEvent) -> None:
    match event:
        case events.VersionReported():
            await version_reported(session, identity, event)
        case events.ProgressReported():
            await progress_reported(session, identity, event)


async def mark_connected(session: AsyncSession, identity: DeviceIdentity) -> int:
    """Record a new live connection; returns its epoch so a stale disconnect can be told apart."""
    device = await session.get(Device, identity.device_id)
    if device is None:
        return 0
    device.connection_epoch += 1
    device.online = True
    device.last_seen_at = utcnow()
    device.login_style = identity.login_style.value
    await session.flush()
    return device.connection_epoch


async def mark_disconnected(session: AsyncSession, device_id: int, epoch: int) -> None:
    await session.execute(
        update(Device)
        .where(Device.id == device_id, Device.connection_epoch == epoch)
        .values(online=False, last_seen_at=utcnow())
    )


async def mark_all_offline(session: AsyncSession) -> None:
    """At start of the embedded broker no connection can be alive."""
    await session.execute(update(Device).where(Device.online.is_(True)).values(online=False))
