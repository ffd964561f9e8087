from __future__ import annotations

from fastapi import APIRouter

from skylift.deps import AdminDep, SessionDep
from skylift.kit.schemas import ItemsOut
from skylift.registry import service
from skylift.registry.schemas import (
    DeviceCreate,
    DeviceOut,
    ModuleCreate,
    ModuleOut,
    ProductCreate,
    ProductOut,
    VersionDistribution,
)

router = APIRouter(tags=["registry"])


@router.post("/products", status_code=201, response_model=ProductOut)
async def create_product(body: ProductCreate, session: SessionDep, _: AdminDep) -> ProductOut:
    product = await service.create_product(session, body)
    return ProductOut.model_validate(product)


@router.get("/products", response_model=ItemsOut[ProductOut])
async def list_products(session: SessionDep, _: AdminDep) -> ItemsOut[ProductOut]:
    products = await service.list_products(session)
    return ItemsOut(items=[ProductOut.model_validate(p) for p in products])


@router.get("/products/{product_id}", response_model=ProductOut)
async def read_product(product_id: int, session: SessionDep, _: AdminDep) -> ProductOut:
    return ProductOut.model_validate(await service.get_product(session, product_id, field="id"))


@router.get("/products/{product_id}/versions", response_model=VersionDistribution)
async def product_versions(
    product_id: int, session: SessionDep, _: AdminDep, module: str = "default"
) -> VersionDistribution:
    versions = await service.version_distribution(session, product_id, module)
    return VersionDistribution(module=service.canonical_module(module), versions=versions)


@router.post("/modules", status_code=201, response_model=ModuleOut)
async def create_module(body: ModuleCreate, session: SessionDep, _: AdminDep) -> ModuleOut:
    return ModuleOut.model_validate(await service.create_module(session, body))


@router.post("/devices", status_code=201, response_model=DeviceOut)
async def create_device(body: DeviceCreate, session: SessionDep, _: AdminDep) -> DeviceOut:
    return service.device_out(await service.create_device(session, body))


@router.get("/devices", response_model=ItemsOut[DeviceOut])
async def list_devices(session: SessionDep, _: AdminDep, product_id: int | None = None) -> ItemsOut[DeviceOut]:
    devices = await service.list_devices(session, product_id)
    return ItemsOut(items=[service.device_out(d) for d in devices])


@router.get("/devices/{device_id}", response_model=DeviceOut)
async def read_device(device_id: int, session: SessionDep, _: AdminDep) -> DeviceOut:
    return service.device_out(await service.get_device(session, device_id))
