"""Latest for everyone (seed 003's version library check), for devices that poll.

When a product has `auto_upgrade_latest`, a device that asks and has no open campaign attempt gets
the newest enabled full package of the module above the version it reported. The answer is tracked
like any other upgrade: it is an attempt in an implicit campaign of that package (type upgrade, no
push, target `{"all": true, "latest": true}`), created on first use and joined by each device that
is offered the package, so progress, results and failure reasons show up where operators look.
Pausing or canceling that campaign, or disabling the package, stops handing the package out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.campaigns.attempts import apply_event, new_attempt, next_rank
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import OPEN_STATES
from skylift.campaigns.results import verification_of
from skylift.campaigns.state import IN_PROGRESS, RETRYABLE, DeviceState, Notified, RetryRequested
from skylift.kit.versions import InvalidVersion, Version, parse_version
from skylift.packages.models import Package
from skylift.registry import service as registry
from skylift.registry.models import DeviceVersion, Product

# The target of an implicit campaign: every device of the product that asks.
LATEST_TARGET = {"all": True, "latest": True}
# An operator who pauses or stops the implicit campaign stops the package being handed out.
HANDING_OUT = ("running", "finished")


@dataclass(frozen=True)
class Candidate:
    package_id: int
    version: str


def upgrades_above(reported: str | None, candidates: Iterable[Candidate]) -> list[Candidate]:
    """Candidates whose version is above the reported one, newest first; none when the report is
    missing or is not a version (003: the platform compares, and needs the device's version first)."""
    if reported is None:
        return []
    try:
        current = parse_version(reported)
    except InvalidVersion:
        return []
    above: list[tuple[Version, Candidate]] = []
    for candidate in candidates:
        try:
            version = parse_version(candidate.version)
        except InvalidVersion:
            continue
        if version > current:
            above.append((version, candidate))
    above.sort(key=lambda pair: (pair[0], pair[1].package_id), reverse=True)
    return [candidate for _, candidate in above]


def is_latest_campaign(campaign: Campaign) -> bool:
    return bool((campaign.target or {}).get("latest"))


async def offer(
    session: AsyncSession, device_id: int, product_id: int, module: str | None, now: datetime
) -> CampaignDevice | None:
    """The attempt (notified now) at the newest package above the device's version, or None."""
    product = await session.get(Product, product_id)
    if product is None or not product.auto_upgrade_latest:
        return None
    module_name = await registry.device_module(session, device_id, module)
    if await _has_open_attempt(session, device_id, module_name):
        return None  # a campaign's attempt waits for its turn (groups, pacing): not two upgrades at once
    reported = await session.scalar(
        select(DeviceVersion.version).where(DeviceVersion.device_id == device_id, DeviceVersion.module == module_name)
    )
    packages = {
        p.id: p
        for p in (
            await session.scalars(
                select(Package)
                .where(
                    Package.product_id == product.id,
                    Package.module == module_name,
                    Package.type == "full",
                    Package.enabled.is_(True),
                )
                .options(selectinload(Package.files))
            )
        ).all()
    }
    for candidate in upgrades_above(reported, (Candidate(p.id, p.version) for p in packages.values())):
        package = packages[candidate.package_id]
        if package.verify_required and (await verification_of(session, package)).state != "verified":
            continue  # not for everyone until a verify campaign has succeeded on it
        campaign = await _implicit_campaign(session, product, package, now)
        if campaign.state not in HANDING_OUT:
            continue
        return await _join(session, campaign, package, device_id, reported, now)
    return None


async def _has_open_attempt(session: AsyncSession, device_id: int, module: str) -> bool:
    found = await session.scalar(
        select(CampaignDevice.id)
        .where(
            CampaignDevice.device_id == device_id,
            CampaignDevice.module == module,
            CampaignDevice.state.in_(OPEN_STATES),
        )
        .limit(1)
    )
    return found is not None


async def _find(session: AsyncSession, package: Package) -> Campaign | None:
    # Locked (PostgreSQL) so that the engine, which skips locked campaigns, cannot finish it meanwhile.
    found = (
        await session.scalars(
            select(Campaign)
            .where(Campaign.package_id == package.id, Campaign.type == "upgrade")
            .order_by(Campaign.id)
            .with_for_update(of=Campaign)
            .options(selectinload(Campaign.package).selectinload(Package.files))
        )
    ).all()
    return next((c for c in found if is_latest_campaign(c)), None)


async def _implicit_campaign(session: AsyncSession, product: Product, package: Package, now: datetime) -> Campaign:
    campaign = await _find(session, package)
    if campaign is not None:
        return campaign
    # Serialize creation per product (PostgreSQL), so that two devices asking at once share one campaign.
    await session.scalar(select(Product.id).where(Product.id == product.id).with_for_update())
    campaign = await _find(session, package)
    if campaign is not None:
        return campaign
    campaign = Campaign(
        product_id=product.id,
        package_id=package.id,
        name=f"latest {package.module} {package.version} (auto_upgrade_latest)",
        type="upgrade",
        protocol="http",
        mode="static",
        push=False,
        offline="fail",
        target=dict(LATEST_TARGET),
        source_versions=[],
        ext_data={},
        state="running",
        started_at=now,
        versions_before={},
    )
    campaign.package = package
    session.add(campaign)
    await session.flush()
    return campaign


async def _join(
    session: AsyncSession,
    campaign: Campaign,
    package: Package,
    device_id: int,
    reported: str | None,
    now: datetime,
) -> CampaignDevice:
    """The device's attempt in the implicit campaign, notified now (new, or retried after a failure).

    One under way is only described again; one that succeeded (the device went back to an older
    version since) is described again too, its result left as it was."""
    attempt = await session.scalar(
        select(CampaignDevice).where(CampaignDevice.campaign_id == campaign.id, CampaignDevice.device_id == device_id)
    )
    if attempt is None:
        attempt = new_attempt(campaign, package, device_id, await next_rank(session, campaign), now)
        session.add(attempt)
        if reported is not None:
            before = dict(campaign.versions_before or {})
            before[reported] = before.get(reported, 0) + 1
            campaign.versions_before = before
    elif DeviceState(attempt.state) in RETRYABLE:
        apply_event(attempt, RetryRequested(), now)
    if attempt.state == DeviceState.PENDING:
        apply_event(attempt, Notified(), now)
    if campaign.state == "finished" and DeviceState(attempt.state) in IN_PROGRESS:
        campaign.state, campaign.finished_at = "running", None  # a new device joined a campaign that had drained
    await session.flush()
    attempt.campaign = campaign
    return attempt
