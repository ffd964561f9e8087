"""Who is in a campaign: targets, admission into staged groups, devices already on the target."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.campaigns import policy
from skylift.campaigns.attempts import new_attempt, next_rank
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import pairs
from skylift.campaigns.state import DeviceState
from skylift.kit.versions import same_version
from skylift.packages.models import Package
from skylift.registry.models import Device, DeviceVersion


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
    reported: dict[int, str] = await pairs(
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


def _on_target(reported: str | None, package: Package) -> bool:
    return reported is not None and same_version(reported, package.version)


async def _has_attempts(session: AsyncSession, campaign: Campaign) -> bool:
    found = await session.scalar(select(CampaignDevice.id).where(CampaignDevice.campaign_id == campaign.id).limit(1))
    return found is not None
