"""What device reports do: record versions, move campaign attempts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.campaigns import service as campaigns
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.state import DeviceState, Downloaded, NoticeSent, Notified, Progressed, VersionReported
from skylift.devices.dialects import base as events
from skylift.devices.identity import DeviceIdentity
from skylift.devices.notices import Notifier, new_message_id
from skylift.devices.topics import gateway_command_topic
from skylift.kit.versions import same_version
from skylift.packages.models import Package
from skylift.registry import service as registry
from skylift.registry.models import Device, DeviceVersion, Module, Product


async def _open_attempts(session: AsyncSession, device_id: int, module: str | None) -> list[CampaignDevice]:
    query = (
        select(CampaignDevice)
        .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
        .where(CampaignDevice.device_id == device_id, CampaignDevice.state.in_(campaigns.IN_PROGRESS_STATES))
        # The attempt the device was notified for last comes first.
        .order_by(CampaignDevice.notified_at.desc(), CampaignDevice.id.desc())
    )
    if module is not None:
        query = query.where(CampaignDevice.module == registry.canonical_module(module))
    return list((await session.scalars(query)).all())


async def version_reported(
    session: AsyncSession, identity: DeviceIdentity, event: events.VersionReported, now: datetime
) -> set[int]:
    """Record the version; returns the campaigns in which an attempt finished or has its notice due again."""
    module = registry.canonical_module(event.module)
    await registry.record_version(session, identity.device_id, module, event.version, now)
    touched = set()
    for attempt in await _open_attempts(session, identity.device_id, module):
        campaigns.apply_event(attempt, VersionReported(event.version, attempt.target_version), now)
        if attempt.state in campaigns.FINAL_STATES or attempt.redeliver:
            touched.add(attempt.campaign_id)
    return touched


async def properties_reported(
    session: AsyncSession, identity: DeviceIdentity, values: Mapping[str, str], now: datetime
) -> tuple[int, set[int]]:
    """An EZtCloud property report: each module whose version property is present reports that version.

    EZtCloud devices may report their properties periodically, so a version that has not changed
    since the last report is only refreshed: it does not judge an attempt under way (it would fail as
    `version mismatch` while the device is still downloading). A changed version is a version report.
    Returns how many module versions were recorded, and the campaigns in which an attempt finished."""
    modules = (await session.scalars(select(Module).where(Module.product_id == identity.product_id))).all()
    known: dict[str, str] = {
        module: version
        for module, version in (
            await session.execute(
                select(DeviceVersion.module, DeviceVersion.version).where(DeviceVersion.device_id == identity.device_id)
            )
        ).tuples()
    }
    recorded, finished = 0, set()
    for module in modules:
        version = values.get(module.version_property) if module.version_property else None
        if version is None:
            continue
        recorded += 1
        if module.name in known and same_version(version, known[module.name]):
            await registry.record_version(session, identity.device_id, module.name, version, now)
        else:
            finished |= await version_reported(session, identity, events.VersionReported(module.name, version), now)
    return recorded, finished


async def progress_reported(
    session: AsyncSession, identity: DeviceIdentity, event: events.ProgressReported, now: datetime
) -> set[int]:
    attempts = await _open_attempts(session, identity.device_id, event.module)
    if not attempts:
        return set()
    campaigns.apply_event(attempts[0], Progressed(event.step, event.desc, event.done_at_100), now)
    return {attempts[0].campaign_id} if attempts[0].state in campaigns.FINAL_STATES else set()


async def download_finished(session: AsyncSession, attempt_id: int, attempt_number: int, now: datetime) -> None:
    attempt = await session.get(CampaignDevice, attempt_id)
    if attempt is not None and attempt.attempts == attempt_number:
        campaigns.apply_event(attempt, Downloaded(), now)


async def handle(session: AsyncSession, identity: DeviceIdentity, event: events.DeviceEvent, now: datetime) -> set[int]:
    """Apply a device event; returns the ids of the campaigns that should react to it at once."""
    match event:
        case events.VersionReported():
            return await version_reported(session, identity, event, now)
        case events.ProgressReported():
            return await progress_reported(session, identity, event, now)
    return set()


@dataclass(frozen=True)
class Offer:
    """What a device that asked for its upgrade gets: the notice, or None when nothing is open."""

    notice: events.Notice | None
    notice_style: str


def _delivered_on_request(attempt: CampaignDevice) -> bool:
    # In progress: the device asks again (a reboot, a lost notice). Pending: a running campaign whose
    # current group includes it, if the campaign waits for devices to ask (no push) or to come back
    # (deliver on connect); other pending attempts are the rollout engine's to send.
    if attempt.state in campaigns.IN_PROGRESS_STATES:
        return True
    campaign = attempt.campaign
    return (
        attempt.state == DeviceState.PENDING
        and campaign.state == "running"
        and attempt.group_index <= campaign.current_group
        and (not campaign.push or campaign.offline == "deliver_on_connect")
    )


async def upgrade_requested(
    session: AsyncSession,
    notifier: Notifier,
    identity: DeviceIdentity,
    module: str | None,
    now: datetime,
    message_id: events.MessageId | None = None,
) -> Offer:
    """The notice of the device's open attempt for `module` (default: the whole device).

    A pending attempt of a campaign without push is delivered now (it becomes notified); an attempt
    already under way is described again with a fresh URL and stays the same attempt."""
    product = await session.get(Product, identity.product_id)
    style = product.notice_style if product is not None else "alibaba"
    attempts = (
        await session.scalars(
            select(CampaignDevice)
            .where(
                CampaignDevice.device_id == identity.device_id,
                CampaignDevice.module == registry.canonical_module(module),
                CampaignDevice.state.in_(campaigns.OPEN_STATES),
            )
            .options(selectinload(CampaignDevice.campaign).selectinload(Campaign.package).selectinload(Package.files))
        )
    ).all()
    candidates = [a for a in attempts if _delivered_on_request(a)]
    if not candidates:
        return Offer(None, style)
    # The attempt under way (last notified) first; else the newest campaign's pending one.
    attempt = max(
        candidates,
        key=lambda a: (a.state != DeviceState.PENDING, a.notified_at.timestamp() if a.notified_at else 0.0, a.id),
    )
    # A pending attempt becomes notified; one under way is described again (its redelivery is done).
    campaigns.apply_event(attempt, Notified() if attempt.state == DeviceState.PENDING else NoticeSent(), now)
    await session.flush()
    notice = notifier.compose(attempt.campaign, attempt.campaign.package, attempt)
    return Offer(dataclasses.replace(notice, message_id=new_message_id() if message_id is None else message_id), style)


@dataclass(frozen=True)
class BlockSource:
    """A package file a device may fetch in blocks, and the attempt that finishing it moves."""

    attempt_id: int
    attempt_number: int
    storage_key: str
    size: int


async def block_source(
    session: AsyncSession, identity: DeviceIdentity, stream_id: int, file_id: int
) -> BlockSource | None:
    """streamId is the device's campaign attempt, fileId a file of its package; anything else is None."""
    attempt = await session.scalar(
        select(CampaignDevice)
        .where(
            CampaignDevice.id == stream_id,
            CampaignDevice.device_id == identity.device_id,
            CampaignDevice.state.in_(campaigns.IN_PROGRESS_STATES),
        )
        .options(selectinload(CampaignDevice.campaign).selectinload(Campaign.package).selectinload(Package.files))
    )
    if attempt is None or attempt.campaign.protocol != "mqtt":
        return None
    file = next((f for f in attempt.campaign.package.files if f.id == file_id), None)
    if file is None:
        return None
    return BlockSource(attempt.id, attempt.attempts, file.storage_key, file.size)


async def mark_seen(session: AsyncSession, device_id: int, now: datetime) -> None:
    """An HTTP device is not connected, but it was heard from."""
    await session.execute(update(Device).where(Device.id == device_id).values(last_seen_at=now))


async def mark_connected(session: AsyncSession, identity: DeviceIdentity, now: datetime) -> int:
    """Record a new live connection; returns its epoch so a stale disconnect can be told apart."""
    device = await session.get(Device, identity.device_id)
    if device is None:
        return 0
    device.connection_epoch += 1
    device.online = True
    device.last_seen_at = now
    device.login_style = identity.login_style.value
    device.login_username = identity.username
    # Sub-devices are reachable exactly while their gateway is connected, on the username it logged in with.
    await session.execute(
        update(Device)
        .where(Device.gateway_id == device.id)
        .values(online=True, command_topic=gateway_command_topic(identity.username))
    )
    await session.flush()
    return device.connection_epoch


async def mark_disconnected(session: AsyncSession, device_id: int, epoch: int, now: datetime) -> bool:
    """Mark the device offline unless a newer connection is live; True when this was the live one."""
    result = await session.execute(
        update(Device)
        .where(Device.id == device_id, Device.connection_epoch == epoch)
        .values(online=False, last_seen_at=now)
    )
    current = bool(getattr(result, "rowcount", 0))
    if current:
        await session.execute(update(Device).where(Device.gateway_id == device_id).values(online=False))
    return current


async def listens_on(session: AsyncSession, device_id: int, command_topic: str | None) -> None:
    """Record where the device subscribed for its notices (the last subscription wins): EZtCloud's
    `command_send/{username}`, or None for its upgrade topic. Sub-devices hear through their gateway."""
    await session.execute(
        update(Device)
        .where(
            Device.id == device_id, Device.gateway_id.is_(None), Device.command_topic.is_distinct_from(command_topic)
        )
        .values(command_topic=command_topic)
    )


async def sub_device_ids(session: AsyncSession, gateway_id: int) -> list[int]:
    return list((await session.scalars(select(Device.id).where(Device.gateway_id == gateway_id))).all())


async def mark_all_offline(session: AsyncSession) -> None:
    """At start of the embedded broker no connection can be alive."""
    await session.execute(update(Device).where(Device.online.is_(True)).values(online=False))
