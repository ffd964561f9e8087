"""Who is in a campaign: targets, admission into staged groups, devices already on the target."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import policy
from skylift.campaigns.attempts import apply_event, attempt_values, next_rank
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import OPEN_STATES, pairs
from skylift.campaigns.state import Canceled, DeviceState
from skylift.db.base import table_of
from skylift.db.session import grew
from skylift.kit.versions import same_version
from skylift.packages import service as packages
from skylift.packages.models import Package
from skylift.registry.models import Device, DeviceVersion


class _Candidate(NamedTuple):
    """What admission needs of a device (a whole row each would cost a fleet several seconds)."""

    id: int
    tags: list[str] | None


def _matches_target(campaign: Campaign, device: _Candidate, reported: str | None) -> bool:
    target = campaign.target or {"all": True}
    if target.get("device_ids") and device.id not in target["device_ids"]:
        return False
    if target.get("tags") and not set(target["tags"]) & set(device.tags or []):
        return False
    if target.get("percent") and not policy.in_share(campaign.product_id, device.id, float(target["percent"])):
        return False
    if campaign.source_versions:
        return reported is not None and any(same_version(reported, v) for v in campaign.source_versions)
    return True


async def admit(session: AsyncSession, campaign: Campaign, package: Package, now: datetime) -> int:
    """Add the product's devices that match the campaign and are not in it yet.

    A device already on the target version is recorded as skipped; so, in a static campaign, is a
    device a diff package does not apply to (not on its source version) and a device busy with an
    open attempt on the same module in another campaign, unless the campaign supersedes such
    attempts (they are canceled). A dynamic campaign leaves those two for a later admission. The
    rest are ordered by a stable pseudo-random rank and split into the staged groups; late arrivals
    join the group being rolled out. One module never has two open attempts on one device.
    Returns how many devices joined.
    """
    known = select(CampaignDevice.device_id).where(CampaignDevice.campaign_id == campaign.id)
    rows = await session.execute(
        select(Device.id, Device.tags).where(
            Device.product_id == campaign.product_id, Device.deleted_at.is_(None), Device.id.not_in(known)
        )
    )
    candidates = [_Candidate(device_id, tags) for device_id, tags in rows.tuples()]
    if not candidates:
        return 0
    ids = [d.id for d in candidates]
    reported: dict[int, str] = await pairs(
        session,
        select(DeviceVersion.device_id, DeviceVersion.version).where(
            DeviceVersion.device_id.in_(ids), DeviceVersion.module == package.module
        ),
    )
    busy = await _open_elsewhere(session, campaign, package, ids)
    matching = [d for d in candidates if _matches_target(campaign, d, reported.get(d.id))]
    matching.sort(key=lambda d: policy.stable_share(campaign.product_id, d.id))
    skips = {d.id: _skip_reason(campaign, package, reported.get(d.id), busy.get(d.id)) for d in matching}
    if campaign.mode == "dynamic":
        # Not on the diff's source yet, or busy: such a device may be taken at a later admission.
        matching = [d for d in matching if skips[d.id] is None or skips[d.id] == _ON_TARGET]
    first_admission = campaign.started_at is None and not await _has_attempts(session, campaign)
    rank = await next_rank(session, campaign)
    bounds = policy.group_bounds(sum(1 for d in matching if skips[d.id] is None), campaign.groups or [100])
    added: list[dict[str, Any]] = []
    position = 0
    for device in matching:
        row = attempt_values(campaign, package, device.id, rank, now)
        reason = skips[device.id]
        if reason is not None:
            row["state"] = DeviceState.SKIPPED.value
            row["step_desc"] = f"already on {reported[device.id]}" if reason == _ON_TARGET else reason
            row["finished_at"] = now
        else:
            for other in busy.get(device.id, []):
                apply_event(other, Canceled(), now)  # supersede: never two open attempts for one module
                other.step_desc = f"superseded by campaign {campaign.id}"
            if first_admission:
                row["group_index"] = policy.group_index(position, bounds)
                position += 1
            else:
                row["group_index"] = campaign.current_group
        rank += 1
        added.append(row)
    # Superseded attempts are closed first: one module never has two open attempts on one device.
    await session.flush()
    # One statement for the lot, and no ORM object each: a fleet of 10,000 joins in a fraction of a second.
    if added:
        await session.execute(insert(table_of(CampaignDevice)), added)
        grew(session, CampaignDevice.__tablename__, len(added))
    return len(added)


_ON_TARGET = "on target"


def _skip_reason(
    campaign: Campaign, package: Package, reported: str | None, busy: list[CampaignDevice] | None
) -> str | None:
    """Why a matching device is not rolled out, or None."""
    if _on_target(reported, package):
        return _ON_TARGET
    if package.type == "diff" and not (
        reported is not None and any(same_version(reported, v) for v in packages.source_versions(package))
    ):
        return "not on a source version"
    if busy and not campaign.supersede:
        return f"busy in campaign {busy[0].campaign_id}"
    return None


async def _open_elsewhere(
    session: AsyncSession, campaign: Campaign, package: Package, device_ids: list[int]
) -> dict[int, list[CampaignDevice]]:
    """The devices' open attempts on the package's module in other campaigns."""
    rows = await session.scalars(
        select(CampaignDevice).where(
            CampaignDevice.device_id.in_(device_ids),
            CampaignDevice.module == package.module,
            CampaignDevice.state.in_(OPEN_STATES),
            CampaignDevice.campaign_id != campaign.id,
        )
    )
    found: dict[int, list[CampaignDevice]] = {}
    for row in rows:
        found.setdefault(row.device_id, []).append(row)
    return found


def _on_target(reported: str | None, package: Package) -> bool:
    return reported is not None and same_version(reported, package.version)


async def _has_attempts(session: AsyncSession, campaign: Campaign) -> bool:
    found = await session.scalar(select(CampaignDevice.id).where(CampaignDevice.campaign_id == campaign.id).limit(1))
    return found is not None
