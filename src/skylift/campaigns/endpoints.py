from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from skylift.campaigns import service
from skylift.campaigns.schemas import CampaignCreate, CampaignDeviceOut, CampaignOut, DeviceSelection
from skylift.deps import AdminDep, ContextDep, SessionDep
from skylift.kit.schemas import ItemsOut

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
OptionalSelection = Annotated[DeviceSelection | None, Body()]


@router.post("", status_code=201, response_model=CampaignOut)
async def create_campaign(body: CampaignCreate, context: ContextDep, session: SessionDep, _: AdminDep) -> CampaignOut:
    campaign = await service.create_campaign(session, context.device_hub.notifier, body)
    return await service.campaign_out(session, campaign)


@router.get("", response_model=ItemsOut[CampaignOut])
async def list_campaigns(session: SessionDep, _: AdminDep, product_id: int | None = None) -> ItemsOut[CampaignOut]:
    campaigns = await service.list_campaigns(session, product_id)
    return ItemsOut(items=[await service.campaign_out(session, c) for c in campaigns])


@router.get("/{campaign_id}", response_model=CampaignOut)
async def read_campaign(campaign_id: int, session: SessionDep, _: AdminDep) -> CampaignOut:
    return await service.campaign_out(session, await service.get_campaign(session, campaign_id))


@router.get("/{campaign_id}/devices", response_model=ItemsOut[CampaignDeviceOut])
async def campaign_devices(campaign_id: int, session: SessionDep, _: AdminDep) -> ItemsOut[CampaignDeviceOut]:
    return ItemsOut(items=await service.device_rows(session, campaign_id))


@router.post("/{campaign_id}/retry", response_model=CampaignOut)
async def retry(
    campaign_id: int,
    context: ContextDep,
    session: SessionDep,
    _: AdminDep,
    body: OptionalSelection = None,
) -> CampaignOut:
    """Re-send the notice to every failed device, or to the listed failed or canceled ones."""
    device_ids = body.device_ids if body else None
    campaign = await service.retry(session, context.device_hub.notifier, campaign_id, device_ids)
    return await service.campaign_out(session, campaign)


@router.post("/{campaign_id}/cancel", response_model=CampaignOut)
async def cancel(campaign_id: int, session: SessionDep, _: AdminDep, body: OptionalSelection = None) -> CampaignOut:
    """Cancel the whole campaign, or only the listed devices' attempts."""
    campaign = await service.cancel(session, campaign_id, body.device_ids if body else None)
    return await service.campaign_out(session, campaign)
