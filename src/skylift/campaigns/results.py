"""Results of a campaign or of every campaign of a package (seed 000's 升级结果)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from skylift.campaigns import rollout
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import ACTIVE_CAMPAIGN_STATES, get_campaign
from skylift.campaigns.schemas import CampaignDeviceOut, CampaignOut, Results, TimelinePoint
from skylift.campaigns.state import DeviceState
from skylift.db.chunks import id_chunks
from skylift.kit.pagination import PageRequest, fetch_page
from skylift.packages.models import Package
from skylift.packages.schemas import VerificationOut
from skylift.registry.models import DeviceVersion

# Attempts counted among failure reasons.
IS_FAILED = CampaignDevice.state == DeviceState.FAILED


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def results_of(session: AsyncSession, campaigns: Sequence[Campaign], module: str) -> Results:
    ids = [c.id for c in campaigns]
    counts = _merged(await _grouped(session, CampaignDevice.state, ids))
    targeted, rate = success_rate(dict(counts))
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
        failure_reasons=_named(_merged(await _grouped(session, CampaignDevice.failure_reason, ids, IS_FAILED))),
        timeline=timeline,
        versions_before=dict(before),
        versions_after={version: n for version, n in after.tuples()},
    )


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
    by_campaign = await _grouped(session, CampaignDevice.state, [c.id for c in verify_campaigns])
    for campaign in verify_campaigns:
        counts = by_campaign.get(campaign.id, {})
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


def success_rate(counts: dict[str, int]) -> tuple[int, float]:
    targeted = sum(n for state, n in counts.items() if state != DeviceState.SKIPPED)
    rate = round(counts.get(DeviceState.SUCCEEDED, 0) / targeted, 4) if targeted else 0.0
    return targeted, rate


async def campaign_out(session: AsyncSession, campaign: Campaign, now: datetime) -> CampaignOut:
    """The campaign as the API shows it at `now`, with why it is waiting and when it next acts."""
    return (await campaign_outs(session, [campaign], now))[0]


async def campaign_outs(session: AsyncSession, campaigns: Sequence[Campaign], now: datetime) -> list[CampaignOut]:
    """Campaigns as the API shows them at `now`: a few queries for the whole list, not a few per campaign."""
    ids = [c.id for c in campaigns]
    counts = await _grouped(session, CampaignDevice.state, ids)
    reasons = await _grouped(session, CampaignDevice.failure_reason, ids, IS_FAILED)
    waits = await rollout.waiting(session, campaigns, now)
    return [_campaign_out(c, counts.get(c.id, {}), reasons.get(c.id, {}), waits[c.id]) for c in campaigns]


async def _grouped(
    session: AsyncSession, column: InstrumentedAttribute[Any], ids: Sequence[int], *where: ColumnElement[bool]
) -> dict[int, dict[Any, int]]:
    """How many of each campaign's attempts hold each value of `column`, by campaign id."""
    found: dict[int, dict[Any, int]] = {}
    for chunk in id_chunks(ids):
        rows = await session.execute(
            select(CampaignDevice.campaign_id, column, func.count())
            .where(CampaignDevice.campaign_id.in_(chunk), *where)
            .group_by(CampaignDevice.campaign_id, column)
        )
        for campaign_id, value, n in rows.tuples():
            found.setdefault(campaign_id, {})[value] = n
    return found


def _merged(grouped: dict[int, dict[Any, int]]) -> Counter[Any]:
    """The counts of every campaign added up."""
    total: Counter[Any] = Counter()
    for counts in grouped.values():
        total.update(counts)
    return total


def _named(reasons: Mapping[str | None, int]) -> dict[str, int]:
    """Failure reasons as the API shows them: a failure without one is "unknown"."""
    return {reason or "unknown": n for reason, n in reasons.items()}


def _campaign_out(
    campaign: Campaign, counts: dict[str, int], reasons: dict[str | None, int], wait: rollout.Wait
) -> CampaignOut:
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
        waiting_reason=wait.reason,
        supersede=campaign.supersede,
        targeted=targeted,
        counts=counts,
        success_rate=rate,
        failure_reasons=_named(reasons),
        created_at=campaign.created_at,
        started_at=campaign.started_at,
        next_run_at=wait.until or campaign.next_run_at,
        finished_at=campaign.finished_at,
    )


CampaignState = Literal["scheduled", "running", "paused", "finished", "canceled", "aborted"]


@dataclass(frozen=True)
class CampaignFilter:
    product_id: int | None = None
    package_id: int | None = None
    state: CampaignState | None = None


def _campaigns(where: CampaignFilter) -> Select[Campaign]:
    query = select(Campaign).order_by(Campaign.id)
    if where.product_id is not None:
        query = query.where(Campaign.product_id == where.product_id)
    if where.package_id is not None:
        query = query.where(Campaign.package_id == where.package_id)
    if where.state is not None:
        query = query.where(Campaign.state == where.state)
    return query


async def list_campaigns(session: AsyncSession, where: CampaignFilter, page: PageRequest) -> tuple[list[Campaign], int]:
    return await fetch_page(session, _campaigns(where), page, selectinload(Campaign.package))


async def campaigns_of_package(session: AsyncSession, package_id: int) -> list[Campaign]:
    return list((await session.scalars(_campaigns(CampaignFilter(package_id=package_id)))).all())


AttemptState = Literal["pending", "notified", "downloading", "upgrading", "succeeded", "failed", "canceled", "skipped"]


async def device_rows(
    session: AsyncSession,
    campaign_id: int,
    state: AttemptState | None,
    failure_reason: str | None,
    page: PageRequest,
) -> tuple[list[CampaignDeviceOut], int]:
    """The campaign's attempts by id (the order devices joined it), one page at a time."""
    campaign = await get_campaign(session, campaign_id)
    query = select(CampaignDevice).where(CampaignDevice.campaign_id == campaign.id).order_by(CampaignDevice.id)
    if state is not None:
        query = query.where(CampaignDevice.state == state)
    if failure_reason is not None:
        query = query.where(CampaignDevice.failure_reason == failure_reason)
    attempts, total = await fetch_page(session, query, page, selectinload(CampaignDevice.device))
    rows = [_attempt_out(a) for a in attempts]
    return rows, total


def _attempt_out(a: CampaignDevice) -> CampaignDeviceOut:
    return CampaignDeviceOut(
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


@dataclass(frozen=True)
class AttemptSeen:
    """One device's attempt in one campaign, as lists of attempts across campaigns show it."""

    campaign_id: int
    campaign_name: str
    attempt: CampaignDeviceOut


async def attempts_across(
    session: AsyncSession, limit: int, device_id: int | None = None, failed_only: bool = False
) -> list[AttemptSeen]:
    """Attempts of every campaign, the latest first: a device's upgrade history, or the recent failures."""
    query = (
        select(CampaignDevice, Campaign.name)
        .join(Campaign, Campaign.id == CampaignDevice.campaign_id)
        .order_by(CampaignDevice.updated_at.desc(), CampaignDevice.id.desc())
        .limit(limit)
        .options(selectinload(CampaignDevice.device))
    )
    if device_id is not None:
        query = query.where(CampaignDevice.device_id == device_id)
    if failed_only:
        query = query.where(CampaignDevice.state == DeviceState.FAILED)
    return [AttemptSeen(a.campaign_id, name, _attempt_out(a)) for a, name in (await session.execute(query)).tuples()]
