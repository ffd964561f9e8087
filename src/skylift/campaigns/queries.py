"""Lookups every part of campaigns shares: campaign and attempt rows, and the state groups they filter on."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.campaigns.errors import CampaignNotFound
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.state import FINAL, IN_PROGRESS, DeviceState
from skylift.db.session import claiming
from skylift.packages.models import Package
from skylift.registry.models import Device

IN_PROGRESS_STATES = [s.value for s in IN_PROGRESS]
OPEN_STATES = [DeviceState.PENDING.value, *IN_PROGRESS_STATES]
FINAL_STATES = [s.value for s in FINAL]
ACTIVE_CAMPAIGN_STATES = ("scheduled", "running", "paused")
CLOSED_CAMPAIGN_STATES = ("finished", "canceled", "aborted")
APPROVAL_PREFIX = "waiting for approval"


async def pairs(session: AsyncSession, query: Select[Any, Any]) -> dict[Any, Any]:
    """A two-column query as a dict (first column → second)."""
    return {key: value for key, value in (await session.execute(query)).tuples()}


async def get_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    campaign = await session.scalar(
        select(Campaign)
        .where(Campaign.id == campaign_id)
        .options(selectinload(Campaign.package).selectinload(Package.files))
    )
    if campaign is None:
        raise CampaignNotFound(f"campaign {campaign_id} does not exist", field="id")
    return campaign


async def attempts_where(
    session: AsyncSession, campaign: Campaign, *conditions: Any, claim: bool = False
) -> list[CampaignDevice]:
    """Attempts of the campaign; with `claim`, rows another replica is working on are skipped."""
    query = (
        select(CampaignDevice)
        .where(CampaignDevice.campaign_id == campaign.id, *conditions)
        .options(selectinload(CampaignDevice.device).selectinload(Device.product))
        .order_by(CampaignDevice.rank)
    )
    if claim:
        query = claiming(session, query, of=CampaignDevice)
    return list((await session.scalars(query)).all())


class Reachability(NamedTuple):
    """A pending attempt as the notice step needs it: no ORM object for each of a fleet's attempts."""

    id: int
    device_id: int
    online: bool
    listening: bool


async def pending_reachability(session: AsyncSession, campaign: Campaign) -> list[Reachability]:
    """The campaign's pending attempts in groups up to its current one, in rollout order, with whether
    each device is online and listening; rows another replica is working on are skipped."""
    query = (
        select(CampaignDevice.id, CampaignDevice.device_id, Device.online, Device.listening)
        .join(Device, Device.id == CampaignDevice.device_id)
        .where(
            CampaignDevice.campaign_id == campaign.id,
            CampaignDevice.state == DeviceState.PENDING.value,
            CampaignDevice.group_index <= campaign.current_group,
        )
        .order_by(CampaignDevice.rank)
    )
    query = claiming(session, query, of=CampaignDevice)
    return [Reachability(*row) for row in (await session.execute(query)).tuples()]
