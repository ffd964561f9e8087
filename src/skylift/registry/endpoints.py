from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.context import AppContext
from skylift.db.session import AfterCommit, after_commit
from skylift.deps import AdminDep, ContextDep, OperatorDep, ReadingDep, SessionDep, ViewerDep
from skylift.kit.errors import error_responses
from skylift.kit.ids import Id
from skylift.kit.pagination import PageDep
from skylift.kit.schemas import ItemsOut, Page
from skylift.kit.strict import TextBool
from skylift.registry import importing, listing, service
from skylift.registry.models import Device
from skylift.registry.schemas import (
    DeviceCreate,
    DeviceCredentials,
    DeviceOut,
    DevicePatch,
    DeviceWithCredentials,
    ImportRow,
    ModuleCreate,
    ModuleOut,
    ModulePatch,
    ProductCreate,
    ProductOut,
    ProductPatch,
    VersionDistribution,
)
from skylift.system import audit
from skylift.system.audit import Actor

router = APIRouter(tags=["registry"])


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductCreate, session: SessionDep, actor: OperatorDep) -> ProductOut:
    product = await service.create_product(session, body)
    audit.record(session, actor, "product.create", "product", product.id, **body.model_dump())
    return ProductOut.model_validate(product)


@router.get("/products", response_model=Page[ProductOut])
async def list_products(session: ReadingDep, _: ViewerDep, page: PageDep) -> Page[ProductOut]:
    products, total = await listing.list_products(session, page)
    return page.answer([ProductOut.model_validate(p) for p in products], total)


@router.get("/products/{product_id}", response_model=ProductOut)
async def read_product(product_id: Id, session: ReadingDep, _: ViewerDep) -> ProductOut:
    return ProductOut.model_validate(await service.get_product(session, product_id, field="id"))


@router.patch("/products/{product_id}", response_model=ProductOut)
async def update_product(product_id: Id, body: ProductPatch, session: SessionDep, actor: OperatorDep) -> ProductOut:
    """Change a product's description, notice style or "latest for everyone" (auto_upgrade_latest)."""
    product = await service.update_product(session, product_id, body)
    audit.record(session, actor, "product.update", "product", product_id, **body.model_dump(exclude_none=True))
    return ProductOut.model_validate(product)


@router.get("/products/{product_id}/versions", response_model=VersionDistribution)
async def product_versions(
    product_id: Id, session: ReadingDep, _: ViewerDep, module: str = "default"
) -> VersionDistribution:
    """How many devices report each version of the module (named by its name or its alias)."""
    name, versions = await service.version_distribution(session, product_id, module)
    return VersionDistribution(module=name, versions=versions)


@router.post("/modules", status_code=201, response_model=ModuleOut)
async def create_module(body: ModuleCreate, session: SessionDep, actor: OperatorDep) -> ModuleOut:
    module = await service.create_module(session, body)
    audit.record(session, actor, "module.create", "module", module.id, **body.model_dump())
    return ModuleOut.model_validate(module)


@router.patch("/modules/{module_id}", response_model=ModuleOut)
async def update_module(module_id: Id, body: ModulePatch, session: SessionDep, actor: OperatorDep) -> ModuleOut:
    """Change a module's alias, description or version property (the default module's too)."""
    module = await service.update_module(session, module_id, body)
    audit.record(session, actor, "module.update", "module", module_id, **body.model_dump(exclude_none=True))
    return ModuleOut.model_validate(module)


@router.post("/devices", status_code=201, response_model=DeviceWithCredentials)
async def create_device(
    body: DeviceCreate, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> DeviceWithCredentials:
    """Register a device; the answer carries its credentials (later only through `.../credentials`)."""
    device = await service.create_device(session, body)
    _audit_created(session, actor, device)
    after_commit(session, _wake(context, device.product_id))  # a dynamic campaign may take the new device
    return service.device_with_credentials(device)


_IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {
                "schema": {"type": "string"},
                "example": "name,tags,gateway,address\ngw-1,site-a,,\nsensor-1,site-a;beta,gw-1,S1\n",
            },
            "application/json": {
                "schema": {"type": "array", "items": ImportRow.model_json_schema(), "maxItems": importing.MAX_ROWS}
            },
        },
    }
}


@router.post(
    "/devices/import",
    status_code=201,
    response_model=ItemsOut[DeviceWithCredentials],
    openapi_extra=_IMPORT_BODY,
    responses=error_responses(400, 415),
)
async def import_devices(
    request: Request,
    context: ContextDep,
    session: SessionDep,
    actor: OperatorDep,
    product_id: Id | None = None,
    product_key: Annotated[str | None, Query(max_length=32)] = None,
) -> ItemsOut[DeviceWithCredentials]:
    """Register many devices at once: CSV (`name,tags,gateway,address`, tags separated by `;`) or a JSON array.

    The whole import is checked first; if any row is wrong, nothing is created and `422` lists every wrong
    row (`error.errors`: row, field, message). The answer carries each device's credentials, as
    `POST /devices` does."""
    product = await service.product_for_import(session, product_id, product_key)
    return await import_rows(
        context, session, actor, product.id, request.headers.get("content-type"), await request.body()
    )


async def import_rows(
    context: AppContext, session: AsyncSession, actor: Actor, product_id: int, content_type: str | None, body: bytes
) -> ItemsOut[DeviceWithCredentials]:
    """An import's rows (CSV or JSON, as `content_type` says) registered in the product, all or none."""
    rows = importing.parse(content_type, body)
    devices = await importing.import_devices(session, product_id, rows)
    for device in devices:
        _audit_created(session, actor, device, source="import")
    after_commit(session, _wake(context, product_id))
    return ItemsOut(items=[service.device_with_credentials(d) for d in devices])


def _audit_created(session: AsyncSession, actor: Actor, device: Device, **details: str) -> None:
    where = {"gateway_id": device.gateway_id, "address": device.address} if device.gateway_id is not None else {}
    audit.record(
        session,
        actor,
        "device.create",
        "device",
        device.id,
        product_id=device.product_id,
        name=device.name,
        **where,
        **details,
    )


def _wake(context: AppContext, product_id: int) -> AfterCommit:
    async def wake() -> None:
        context.wake_engine(product_id)

    return wake


@router.patch("/devices/{device_id}", response_model=DeviceOut)
async def update_device(
    device_id: Id, body: DevicePatch, context: ContextDep, session: SessionDep, actor: OperatorDep
) -> DeviceOut:
    """Change a device's tags (campaigns can target tags), or disable or enable it."""
    device = await service.update_device(session, device_id, body)
    audit.record(session, actor, "device.update", "device", device_id, **body.model_dump(exclude_none=True))
    after_commit(session, _wake(context, device.product_id))
    if body.enabled is False:
        after_commit(session, _disconnect(context, device_id))
    return service.device_out(device)


@router.post("/devices/{device_id}/credentials", response_model=DeviceWithCredentials)
async def rotate_credentials(
    device_id: Id, context: ContextDep, session: SessionDep, actor: AdminDep
) -> DeviceWithCredentials:
    """Issue a new access token and device secret; the old ones are refused and a live connection is closed."""
    device = await service.rotate_credentials(session, device_id)
    audit.record(session, actor, "device.rotate_credentials", "device", device_id)
    after_commit(session, _disconnect(context, device_id))
    return service.device_with_credentials(device)


@router.get("/devices/{device_id}/credentials", response_model=DeviceCredentials)
async def read_credentials(device_id: Id, session: SessionDep, actor: AdminDep) -> DeviceCredentials:
    """A device's current credentials, for provisioning; every reading is recorded in the audit log."""
    device = await service.get_device(session, device_id)
    audit.record(session, actor, "device.read_credentials", "device", device_id)
    return service.device_credentials(device)


def _disconnect(context: AppContext, device_id: Id) -> AfterCommit:
    async def disconnect() -> None:
        await context.device_hub.disconnect(device_id)

    return disconnect


@router.get("/devices", response_model=Page[DeviceOut])
async def list_devices(
    session: ReadingDep,
    _: ViewerDep,
    page: PageDep,
    product_id: Id | None = None,
    q: Annotated[str | None, Query(max_length=64, description="Prefix of the name or address (any case)")] = None,
    online: Annotated[TextBool | None, Query(description="Connected now (a sub-device: its gateway is)")] = None,
    enabled: Annotated[TextBool | None, Query(description="Allowed to log in")] = None,
    tag: Annotated[
        list[str] | None, Query(description="Devices carrying any of these tags (repeat the parameter)")
    ] = None,
    module: Annotated[
        str | None, Query(max_length=64, description="Devices that reported this module (name or alias)")
    ] = None,
    version: Annotated[
        str | None, Query(max_length=64, description="...at this version (of `module`, else the default module)")
    ] = None,
    include_deleted: Annotated[TextBool, Query(description="Also decommissioned devices")] = False,
) -> Page[DeviceOut]:
    """Devices by id, one page at a time; every filter given must hold."""
    where = listing.DeviceFilter(product_id, q, online, enabled, tag or [], module, version, include_deleted)
    devices, total = await listing.list_devices(session, where, page)
    return page.answer([service.device_out(d) for d in devices], total)


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def read_device(device_id: Id, session: ReadingDep, _: ViewerDep) -> DeviceOut:
    return service.device_out(await service.get_device(session, device_id))
