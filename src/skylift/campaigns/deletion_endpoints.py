"""`DELETE` of products, modules, devices, packages and campaigns; each one is in the audit log."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response

from skylift.campaigns import deletions
from skylift.context import AppContext
from skylift.db.session import AfterCommit, after_commit
from skylift.deps import ContextDep, NowDep, OperatorDep, SessionDep
from skylift.kit.ids import Id
from skylift.system import audit

router = APIRouter()


def _remove_files(context: AppContext, keys: list[str]) -> AfterCommit:
    # After the commit: a crash before this leaves files no package references, which the start's sweep moves aside.
    async def remove() -> None:
        for key in keys:
            await asyncio.to_thread(context.storage.delete, key)

    return remove


@router.delete("/devices/{device_id}", tags=["registry"], status_code=204, response_class=Response)
async def delete_device(
    device_id: Id, context: ContextDep, session: SessionDep, actor: OperatorDep, now: NowDep
) -> None:
    """Decommission a device: its credentials are refused at once and a live connection is closed; its open
    attempts are canceled; its history stays (`GET /devices/{id}`, `GET /devices?include_deleted=true`)."""
    device = await deletions.delete_device(session, device_id, now)
    audit.record(session, actor, "device.delete", "device", device_id, name=device.name, product_id=device.product_id)

    async def disconnect() -> None:
        await context.device_hub.disconnect(device_id)
        context.wake_engine()

    after_commit(session, disconnect)


@router.delete("/packages/{package_id}", tags=["packages"], status_code=204, response_class=Response)
async def delete_package(
    package_id: Id, context: ContextDep, session: SessionDep, actor: OperatorDep, now: NowDep
) -> None:
    """Delete a package and its files; `409` names the open campaign that still uses it."""
    keys = await deletions.delete_package(session, package_id, now)
    audit.record(session, actor, "package.delete", "package", package_id, files=len(keys))
    after_commit(session, _remove_files(context, keys))


@router.delete("/modules/{module_id}", tags=["registry"], status_code=204, response_class=Response)
async def delete_module(module_id: Id, session: SessionDep, actor: OperatorDep) -> None:
    """Delete a module that no package is made for (not the default module)."""
    module = await deletions.delete_module(session, module_id)
    audit.record(session, actor, "module.delete", "module", module_id, name=module.name, product_id=module.product_id)


@router.delete("/campaigns/{campaign_id}", tags=["campaigns"], status_code=204, response_class=Response)
async def delete_campaign(campaign_id: Id, session: SessionDep, actor: OperatorDep) -> None:
    """Delete a finished, canceled or aborted campaign with its per-device results."""
    campaign = await deletions.delete_campaign(session, campaign_id)
    audit.record(session, actor, "campaign.delete", "campaign", campaign_id, name=campaign.name)


@router.delete("/products/{product_id}", tags=["registry"], status_code=204, response_class=Response)
async def delete_product(product_id: Id, context: ContextDep, session: SessionDep, actor: OperatorDep) -> None:
    """Delete a product without devices in service, with its modules, packages (and their files) and closed
    campaigns."""
    product, keys = await deletions.delete_product(session, product_id)
    audit.record(session, actor, "product.delete", "product", product_id, name=product.name, files=len(keys))
    after_commit(session, _remove_files(context, keys))
