"""Deleting things: each delete checks what still depends on what it removes, and keeps history.

These live with campaigns because each rule asks about campaigns (an open one blocks a package, a
device's open attempts end with it). A device is decommissioned, not erased: its attempts stay in
the campaigns it was in. A package used by a closed campaign keeps its row for that campaign's
results; its files go. Callers remove the returned storage keys once the deletion is committed.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.campaigns.attempts import apply_event
from skylift.campaigns.errors import CampaignConflict
from skylift.campaigns.models import Campaign, CampaignDevice
from skylift.campaigns.queries import ACTIVE_CAMPAIGN_STATES, CLOSED_CAMPAIGN_STATES, OPEN_STATES, get_campaign
from skylift.campaigns.rollout import settle
from skylift.campaigns.state import Canceled
from skylift.kit.errors import Conflict
from skylift.packages import service as packages
from skylift.packages.models import Package, PackageFile
from skylift.registry import service as registry
from skylift.registry.models import DEFAULT_MODULE, Device, Module, Product

DEVICE_DELETED = "device deleted"


async def delete_device(session: AsyncSession, device_id: int, now: datetime) -> Device:
    """Decommission a device: refused at login from now on, its open attempts canceled, its history kept."""
    device = await registry.get_device_in_service(session, device_id, field="id")
    sub_devices = await session.scalar(
        select(func.count()).where(Device.gateway_id == device.id, Device.deleted_at.is_(None))
    )
    if sub_devices:
        raise Conflict(
            f"device {device.id} is the gateway of {sub_devices} sub-device(s); delete them first", field="id"
        )
    attempts = (
        await session.scalars(
            select(CampaignDevice).where(CampaignDevice.device_id == device.id, CampaignDevice.state.in_(OPEN_STATES))
        )
    ).all()
    for attempt in attempts:
        apply_event(attempt, Canceled(), now)
        attempt.step_desc = DEVICE_DELETED
    registry.decommission(device, now)
    await session.flush()
    await settle(session, {a.campaign_id for a in attempts}, now)  # a campaign may be done without the device
    return device


async def _open_campaign_of(session: AsyncSession, condition: ColumnElement[bool]) -> Campaign | None:
    return await session.scalar(
        select(Campaign).where(Campaign.state.in_(ACTIVE_CAMPAIGN_STATES), condition).order_by(Campaign.id).limit(1)
    )


async def delete_package(session: AsyncSession, package_id: int, now: datetime) -> list[str]:
    """Delete a package no open campaign uses; returns the storage keys of its files."""
    package = await packages.get_package(session, package_id, field="id")
    blocking = await _open_campaign_of(session, Campaign.package_id == package.id)
    if blocking is not None:
        raise CampaignConflict(
            f"campaign {blocking.id} ({blocking.name!r}, {blocking.state}) uses package {package.id}: cancel it first",
            field="id",
        )
    return await packages.remove(session, package, now)


async def delete_module(session: AsyncSession, module_id: int) -> Module:
    """Delete a module no package is made for (the default module stays)."""
    module = await registry.get_module(session, module_id)
    if module.name == DEFAULT_MODULE:
        raise Conflict("the default module is every product's whole-device firmware; it cannot be deleted", field="id")
    package_id = await session.scalar(
        select(Package.id)
        .where(Package.product_id == module.product_id, Package.module == module.name, Package.deleted_at.is_(None))
        .limit(1)
    )
    if package_id is not None:
        raise Conflict(
            f"package {package_id} is made for module {module.name!r}: delete its packages first", field="id"
        )
    await session.delete(module)
    await session.flush()
    return module


async def delete_campaign(session: AsyncSession, campaign_id: int) -> Campaign:
    """Delete a finished, canceled or aborted campaign with its per-device records."""
    campaign = await get_campaign(session, campaign_id)
    if campaign.state not in CLOSED_CAMPAIGN_STATES:
        raise CampaignConflict(f"campaign {campaign.id} is {campaign.state}: cancel it first", field="id")
    await session.execute(delete(Campaign).where(Campaign.id == campaign.id))
    return campaign


async def delete_product(session: AsyncSession, product_id: int) -> tuple[Product, list[str]]:
    """Delete a product without devices in service, with its modules, packages and closed campaigns.

    Returns the product and the storage keys of its packages' files."""
    product = await registry.get_product(session, product_id, field="id")
    devices = await session.scalar(
        select(func.count()).where(Device.product_id == product.id, Device.deleted_at.is_(None))
    )
    if devices:
        raise Conflict(f"product {product.id} has {devices} device(s) in service; delete them first", field="id")
    blocking = await _open_campaign_of(session, Campaign.product_id == product.id)
    if blocking is not None:
        raise CampaignConflict(
            f"campaign {blocking.id} ({blocking.name!r}, {blocking.state}) is open: cancel it first", field="id"
        )
    keys = list(
        (
            await session.scalars(select(PackageFile.storage_key).join(Package).where(Package.product_id == product.id))
        ).all()
    )
    # Campaigns first: they name packages, which go with the product.
    await session.execute(delete(Campaign).where(Campaign.product_id == product.id))
    await session.execute(delete(Product).where(Product.id == product.id))
    return product, keys
