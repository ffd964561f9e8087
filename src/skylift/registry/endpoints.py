from __future__ import annotations

from fastapi import APIRouter

from skylift.context import AppContext
from skylift.db.session import AfterCommit, after_commit
from skylift.deps import AdminDep, ContextDep, SessionDep
from skylift.kit.ids import Id
from skylift.kit.schemas import ItemsOut
from skylift.registry import service
from skylift.registry.schemas import (
    DeviceCreate,
    DeviceCredentials,
    DeviceOut,
    DevicePatch,
    DeviceWithCredentials,
    ModuleCreate,
    ModuleOut,
    ModulePatch,
    ProductCreate,
    ProductOut,
    ProductPatch,
    VersionDistribution,
)
from skylift.system import audit

router = APIRouter(tags=["registry"])


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductCreate, session: SessionDep, actor: AdminDep) -> ProductOut:
    product = await service.create_product(session, body)
    audit.record(session, actor, "product.create", "product", product.id, **body.model_dump())
    return ProductOut.model_validate(product)


@router.get("/products", response_model=ItemsOut[ProductOut])
async def list_products(session: SessionDep, _: AdminDep) -> ItemsOut[ProductOut]:
    products = await service.list_products(session)
    return ItemsOut(items=[ProductOut.model_validate(p) for p in products])


@router.get("/products/{product_id}", response_model=ProductOut)
async def read_product(product_id: Id, session: SessionDep, _: AdminDep) -> ProductOut:
    return ProductOut.model_validate(await service.get_product(session, product_id, field="id"))


@router.patch("/products/{product_id}", response_model=ProductOut)
async def update_product(product_id: Id, body: ProductPatch, session: SessionDep, actor: AdminDep) -> ProductOut:
    """Change a product's description, notice style or "latest for everyone" (auto_upgrade_latest)."""
    product = await service.update_product(session, product_id, body)
    audit.record(session, actor, "product.update", "product", product_id, **body.model_dump(exclude_none=True))
    return ProductOut.model_validate(product)


@router.get("/products/{product_id}/versions", response_model=VersionDistribution)
async def product_versions(
    product_id: Id, session: SessionDep, _: AdminDep, module: str = "default"
) -> VersionDistribution:
    versions = await service.version_distribution(session, product_id, module)
    return VersionDistribution(module=service.canonical_module(module), versions=versions)


@router.post("/modules", status_code=201, response_model=ModuleOut)
async def create_module(body: ModuleCreate, session: SessionDep, actor: AdminDep) -> ModuleOut:
    module = await service.create_module(session, body)
    audit.record(session, actor, "module.create", "module", module.id, **body.model_dump())
    return ModuleOut.model_validate(module)


@router.patch("/modules/{module_id}", response_model=ModuleOut)
async def update_module(module_id: Id, body: ModulePatch, session: SessionDep, actor: AdminDep) -> ModuleOut:
    """Change a module's alias, description or version property (the default module's too)."""
    module = await service.update_module(session, module_id, body)
    audit.record(session, actor, "module.update", "module", module_id, **body.model_dump(exclude_none=True))
    return ModuleOut.model_validate(module)


@router.post("/devices", status_code=201, response_model=DeviceWithCredentials)
async def create_device(
    body: DeviceCreate, context: ContextDep, session: SessionDep, actor: AdminDep
) -> DeviceWithCredentials:
    """Register a device; the answer carries its credentials (later only through `.../credentials`)."""
    device = await service.create_device(session, body)
    audit.record(
        session,
        actor,
        "device.create",
        "device",
        device.id,
        **body.model_dump(include={"product_id", "name", "gateway_id", "address"}, exclude_none=True),
    )
    after_commit(session, _wake(context))  # a dynamic campaign may take the new device
    return service.device_with_credentials(device)


def _wake(context: AppContext) -> AfterCommit:
    async def wake() -> None:
        context.wake_engine()

    return wake


@router.patch("/devices/{device_id}", response_model=DeviceOut)
async def update_device(
    device_id: Id, body: DevicePatch, context: ContextDep, session: SessionDep, actor: AdminDep
) -> DeviceOut:
    """Change a device's tags (campaigns can target tags), or disable or enable it."""
    device = await service.update_device(session, device_id, body)
    audit.record(session, actor, "device.update", "device", device_id, **body.model_dump(exclude_none=True))
    after_commit(session, _wake(context))
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


@router.get("/devices", response_model=ItemsOut[DeviceOut])
async def list_devices(
    session: SessionDep, _: AdminDep, product_id: Id | None = None, tag: str | None = None
) -> ItemsOut[DeviceOut]:
    devices = await service.list_devices(session, product_id, tag)
    return ItemsOut(items=[service.device_out(d) for d in devices])


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def read_device(device_id: Id, session: SessionDep, _: AdminDep) -> DeviceOut:
    return service.device_out(await service.get_device(session, device_id))
