from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from skylift.campaigns import actions, results
from skylift.campaigns.queries import get_campaign
from skylift.campaigns.schemas import CampaignCreate, CampaignDeviceOut, CampaignOut, DeviceSelection, Results
from skylift.deps import ContextDep, NowDep, OperatorDep, ReadingDep, SessionDep, ViewerDep
from skylift.kit.ids import Id
from skylift.kit.pagination import PageDep
from skylift.kit.schemas import Page
from skylift.packages import service as packages
from skylift.system import audit

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
OptionalSelection = Annotated[DeviceSelection | None, Body()]


@router.post("", status_code=201, response_model=CampaignOut)
async def create_campaign(
    body: CampaignCreate, context: ContextDep, session: SessionDep, actor: OperatorDep, now: NowDep
) -> CampaignOut:
    https = context.settings.resolved_public_https_url is not None
    campaign = await actions.create_campaign(session, body, now, https_available=https)
    audit.record(session, actor, "campaign.create", "campaign", campaign.id, **body.model_dump(mode="json"))
    return await results.campaign_out(session, campaign, now)


@router.get("", response_model=Page[CampaignOut])
async def list_campaigns(
    session: ReadingDep,
    _: ViewerDep,
    now: NowDep,
    page: PageDep,
    product_id: Id | None = None,
    package_id: Id | None = None,
    state: results.CampaignState | None = None,
) -> Page[CampaignOut]:
    """Campaigns by id, one page at a time; every filter given must hold."""
    where = results.CampaignFilter(product_id, package_id, state)
    campaigns, total = await results.list_campaigns(session, where, page)
    return page.answer(await results.campaign_outs(session, campaigns, now), total)


@router.get("/{campaign_id}", response_model=CampaignOut)
async def read_campaign(campaign_id: Id, session: ReadingDep, _: ViewerDep, now: NowDep) -> CampaignOut:
    return await results.campaign_out(session, await get_campaign(session, campaign_id), now)


@router.get("/{campaign_id}/devices", response_model=Page[CampaignDeviceOut])
async def campaign_devices(
    campaign_id: Id,
    session: ReadingDep,
    _: ViewerDep,
    page: PageDep,
    state: results.AttemptState | None = None,
    failure_reason: Annotated[str | None, Query(max_length=64, description="e.g. offline, timeout")] = None,
) -> Page[CampaignDeviceOut]:
    """The campaign's devices in the order they joined it, one page at a time."""
    rows, total = await results.device_rows(session, campaign_id, state, failure_reason, page)
    return page.answer(rows, total)


@router.get("/{campaign_id}/results", response_model=Results)
async def campaign_results(campaign_id: Id, session: ReadingDep, _: ViewerDep) -> Results:
    """Counts, success rate, failure reasons, finished devices per minute, versions before and after."""
    campaign = await get_campaign(session, campaign_id)
    return await results.results_of(session, [campaign], campaign.package.module)


@router.post("/{campaign_id}/pause", response_model=CampaignOut)
async def pause(campaign_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep) -> CampaignOut:
    campaign = await actions.pause(session, campaign_id)
    audit.record(session, actor, "campaign.pause", "campaign", campaign_id)
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/resume", response_model=CampaignOut)
async def resume(campaign_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep) -> CampaignOut:
    campaign = await actions.resume(session, campaign_id, now)
    audit.record(session, actor, "campaign.resume", "campaign", campaign_id)
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/approve", response_model=CampaignOut)
async def approve(campaign_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep) -> CampaignOut:
    """Start the next staged group."""
    campaign = await actions.approve(session, campaign_id, now)
    audit.record(session, actor, "campaign.approve", "campaign", campaign_id, group=campaign.current_group)
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/retry", response_model=CampaignOut)
async def retry(
    campaign_id: Id,
    session: SessionDep,
    actor: OperatorDep,
    now: NowDep,
    body: OptionalSelection = None,
) -> CampaignOut:
    """Re-send the notice to every failed device, or to the listed failed or canceled ones."""
    device_ids = body.device_ids if body else None
    campaign = await actions.retry(session, campaign_id, device_ids, now)
    audit.record(session, actor, "campaign.retry", "campaign", campaign_id, device_ids=device_ids)
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel(
    campaign_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep, body: OptionalSelection = None
) -> CampaignOut:
    """Cancel the whole campaign, or only the listed devices' attempts."""
    device_ids = body.device_ids if body else None
    campaign = await actions.cancel(session, campaign_id, device_ids, now)
    audit.record(session, actor, "campaign.cancel", "campaign", campaign_id, device_ids=device_ids)
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/devices/{device_id}/retry", response_model=CampaignOut)
async def retry_device(
    campaign_id: Id, device_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep
) -> CampaignOut:
    campaign = await actions.retry(session, campaign_id, [device_id], now)
    audit.record(session, actor, "campaign.retry", "campaign", campaign_id, device_ids=[device_id])
    return await results.campaign_out(session, campaign, now)


@router.post("/{campaign_id}/devices/{device_id}/cancel", response_model=CampaignOut)
async def cancel_device(
    campaign_id: Id, device_id: Id, session: SessionDep, actor: OperatorDep, now: NowDep
) -> CampaignOut:
    campaign = await actions.cancel(session, campaign_id, [device_id], now)
    audit.record(session, actor, "campaign.cancel", "campaign", campaign_id, device_ids=[device_id])
    return await results.campaign_out(session, campaign, now)


package_results_router = APIRouter(prefix="/packages", tags=["packages"])


@package_results_router.get("/{package_id}/results", response_model=Results)
async def package_results(package_id: Id, session: ReadingDep, _: ViewerDep) -> Results:
    """The results of every campaign of this package together."""
    package = await packages.get_package(session, package_id, field="id")
    return await results.results_of(session, await results.campaigns_of_package(session, package.id), package.module)
