"""Results of a campaign or of every campaign of a package (seed 000's 升级结果)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns import service
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.schemas import Results, TimelinePoint
from skylift.campaigns.state import DeviceState
from skylift.registry.models import DeviceVersion


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def results_of(session: AsyncSession, campaigns: Sequence[Campaign], module: str) -> Results:
    ids = [c.id for c in campaigns]
    counts: Counter[str] = Counter()
    for campaign in campaigns:
        counts.update(await service.state_counts(session, campaign.id))
    targeted, rate = service.success_rate(dict(counts))
    finished = await session.execute(
        select(CampaignDevice.finished_at, CampaignDevice.state).where(
            CampaignDevice.campaign_id.in_(ids),
            CampaignDevice.state.in_([DeviceState.SUCCEEDED.value, DeviceState.FAILED.value]),
            CampaignDevice.finished_at.is_not(None),
        )
    )
    per_minute: dict[datetime, Counter[str]] = {}
    for finished_at, state in finished.tuples():
        if finished_at is not None:
            per_minute.setdefault(_minute(finished_at), Counter())[state] += 1
    timeline = [
        TimelinePoint(minute=minute, succeeded=tally[DeviceState.SUCCEEDED], failed=tally[DeviceState.FAILED])
        for minute, tally in sorted(per_minute.items())
    ]
    before: Counter[str] = Counter()
    for campaign in campaigns:
        before.update(campaign.versions_before or {})
    devices = select(CampaignDevice.device_id).where(CampaignDevice.campaign_id.in_(ids)).distinct()
    after = await session.execute(
        select(DeviceVersion.version, func.count())
        .where(DeviceVersion.device_id.in_(devices), DeviceVersion.module == module)
        .group_by(DeviceVersion.version)
    )
    return Results(
        counts=dict(counts),
        targeted=targeted,
        success_rate=rate,
        failure_reasons=await service.failure_reasons(session, ids),
        timeline=timeline,
        versions_before=dict(before),
        versions_after={version: n for version, n in after.tuples()},
    )
