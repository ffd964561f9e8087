"""Products, modules and devices."""

from __future__ import annotations

import secrets
import string
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.kit import sealing
from skylift.kit.errors import Conflict, Invalid, NotFound
from skylift.registry.models import DEFAULT_MODULE, Device, DeviceVersion, Module, Product
from skylift.registry.schemas import (
    DeviceCreate,
    DeviceCredentials,
    DeviceOut,
    DevicePatch,
    DeviceWithCredentials,
    ModuleCreate,
    ModulePatch,
    ProductCreate,
    ProductPatch,
)

MODULE_ALIASES = {"main": DEFAULT_MODULE}
DEFAULT_VERSION_PROPERTY = "version"
_KEY_ALPHABET = string.ascii_letters + string.digits


def canonical_module(name: str | None) -> str:
    """`main` (EZtCloud) and an absent module both mean the whole-device `default` module."""
    if not name:
        return DEFAULT_MODULE
    return MODULE_ALIASES.get(name, name)


def _new_product_key() -> str:
    return "a1" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(9))


async def create_product(session: AsyncSession, data: ProductCreate) -> Product:
    if await session.scalar(select(Product.id).where(Product.name == data.name)) is not None:
        raise Conflict(f"a product named {data.name!r} already exists", field="name")
    product = Product(
        name=data.name,
        description=data.description,
        notice_style=data.notice_style,
        auto_upgrade_latest=data.auto_upgrade_latest,
        product_key=_new_product_key(),
    )
    product.modules = [
        Module(
            name=DEFAULT_MODULE,
            alias="main",
            description="Whole-device firmware",
            version_property=DEFAULT_VERSION_PROPERTY,
        )
    ]
    session.add(product)
    await session.flush()
    return product


async def get_product(session: AsyncSession, product_id: int, field: str = "product_id") -> Product:
    product = await session.scalar(
        select(Product).where(Product.id == product_id).options(selectinload(Product.modules))
    )
    if product is None:
        raise NotFound(f"product {product_id} does not exist", field=field)
    return product


async def update_product(session: AsyncSession, product_id: int, patch: ProductPatch) -> Product:
    product = await get_product(session, product_id, field="id")
    if patch.description is not None:
        product.description = patch.description
    if patch.notice_style is not None:
        product.notice_style = patch.notice_style
    if patch.auto_upgrade_latest is not None:
        product.auto_upgrade_latest = patch.auto_upgrade_latest
    await session.flush()
    return product


async def list_products(session: AsyncSession) -> list[Product]:
    return list(
        (await session.scalars(select(Product).options(selectinload(Product.modules)).order_by(Product.id))).all()
    )


async def create_module(session: AsyncSession, data: ModuleCreate) -> Module:
    product = await get_product(session, data.product_id)
    if data.name in MODULE_ALIASES:
        raise Invalid(f"{data.name!r} is an alias of the default module", field="name")
    if any(module.name == data.name for module in product.modules):
        raise Conflict(f"product {product.id} already has a module {data.name!r}", field="name")
    version_property = data.version_property or default_version_property(data.name)
    _check_property_free(product, version_property, None)
    module = Module(
        product_id=product.id,
        name=data.name,
        alias=data.alias,
        description=data.description,
        version_property=version_property,
    )
    session.add(module)
    await session.flush()
    return module


def default_version_property(module: str) -> str:
    """`version` for the whole device, `mcu_version` for module `MCU` (the names 003's examples use)."""
    return DEFAULT_VERSION_PROPERTY if module == DEFAULT_MODULE else f"{module.lower()}_version"


def _check_property_free(product: Product, version_property: str, module_id: int | None) -> None:
    # One property stands for one module, or a single report would set two modules' versions.
    taken = next((m for m in product.modules if m.version_property == version_property and m.id != module_id), None)
    if taken is not None:
        raise Conflict(
            f"property {version_property!r} already carries the version of module {taken.name!r}",
            field="version_property",
        )


async def get_module(session: AsyncSession, module_id: int) -> Module:
    module = await session.get(Module, module_id)
    if module is None:
        raise NotFound(f"module {module_id} does not exist", field="id")
    return module


async def update_module(session: AsyncSession, module_id: int, patch: ModulePatch) -> Module:
    """Alias, description and version property; also of the default module."""
    module = await get_module(session, module_id)
    if patch.version_property is not None:
        _check_property_free(await get_product(session, module.product_id), patch.version_property, module.id)
        module.version_property = patch.version_property
    if patch.alias is not None:
        module.alias = patch.alias
    if patch.description is not None:
        module.description = patch.description
    await session.flush()
    return module


async def require_module(session: AsyncSession, product_id: int, name: str, field: str = "module") -> str:
    module = canonical_module(name)
    exists = await session.scalar(select(Module.id).where(Module.product_id == product_id, Module.name == module))
    if exists is None:
        raise Invalid(f"product {product_id} has no module {name!r}; create it first", field=field)
    return module


def _new_secret() -> str:
    return secrets.token_hex(16)


async def create_device(session: AsyncSession, data: DeviceCreate) -> Device:
    product = await get_product(session, data.product_id)
    if (
        await session.scalar(select(Device.id).where(Device.product_id == product.id, Device.name == data.name))
        is not None
    ):
        raise Conflict(f"product {product.id} already has a device named {data.name!r}", field="name")
    gateway = await _gateway_for(session, data)
    device = Device(
        product_id=product.id,
        name=data.name,
        access_token=_new_secret(),
        device_secret=_new_secret(),
        tags=sorted(set(data.tags)),
        gateway_id=gateway.id if gateway else None,
        address=data.address if gateway else None,
        # A sub-device hears through its gateway (devices/topics.py: gateway_command_topic, refreshed at each
        # gateway login), and is reachable exactly when the gateway is connected.
        command_topic=f"gateway_command_send/{gateway.login_username or gateway.access_token}" if gateway else None,
        online=gateway.online if gateway else False,
        listening=bool(gateway and gateway.online and gateway.relaying),
    )
    session.add(device)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("the device could not be registered; try again", field="name") from exc
    return await get_device(session, device.id)


async def _gateway_for(session: AsyncSession, data: DeviceCreate) -> Device | None:
    """The gateway a new sub-device is registered under (any device can be one, but not a sub-device)."""
    if data.gateway_id is None and data.address is None:
        return None
    if data.gateway_id is None:
        raise Invalid("a sub-device's address needs the gateway_id of its gateway", field="gateway_id")
    if data.address is None:
        raise Invalid("a sub-device needs the address its gateway names it by", field="address")
    gateway = await session.get(Device, data.gateway_id)
    if gateway is None:
        raise NotFound(f"device {data.gateway_id} does not exist", field="gateway_id")
    if gateway.gateway_id is not None:
        raise Invalid(f"device {gateway.id} is itself a sub-device and cannot be a gateway", field="gateway_id")
    taken = await session.scalar(
        select(Device.id).where(Device.gateway_id == gateway.id, Device.address == data.address)
    )
    if taken is not None:
        raise Conflict(f"gateway {gateway.id} already has a sub-device at {data.address!r}", field="address")
    return gateway


def notice_channel(device: Device) -> str:
    """Where the device's notices go: through its gateway, on EZtCloud's command_send, or the upgrade topic."""
    if device.gateway_id is not None:
        return "gateway"
    return "eztcloud" if device.command_topic is not None else "ota"


def device_out(device: Device) -> DeviceOut:
    """A device as lists and reads show it: no credentials."""
    return DeviceOut(
        id=device.id,
        product_id=device.product_id,
        product_key=device.product.product_key,
        name=device.name,
        online=device.online,
        enabled=device.enabled,
        last_seen_at=device.last_seen_at,
        tags=list(device.tags or []),
        versions={v.module: v.version for v in device.versions},
        gateway_id=device.gateway_id,
        address=device.address,
        notice_channel=notice_channel(device),
        created_at=device.created_at,
    )


def device_with_credentials(device: Device) -> DeviceWithCredentials:
    """A device just created or given new credentials, with them."""
    return DeviceWithCredentials(
        **device_out(device).model_dump(), access_token=device.access_token, device_secret=device.device_secret
    )


def device_credentials(device: Device) -> DeviceCredentials:
    return DeviceCredentials(
        device_id=device.id,
        product_key=device.product.product_key,
        device_name=device.name,
        access_token=device.access_token,
        device_secret=device.device_secret,
        mqtt_username=f"{device.name}&{device.product.product_key}",
    )


async def get_device(session: AsyncSession, device_id: int) -> Device:
    device = await session.scalar(
        select(Device)
        .where(Device.id == device_id)
        .options(selectinload(Device.versions), selectinload(Device.product))
    )
    if device is None:
        raise NotFound(f"device {device_id} does not exist", field="device_id")
    return device


async def update_device(session: AsyncSession, device_id: int, patch: DevicePatch) -> Device:
    device = await get_device(session, device_id)
    if patch.tags is not None:
        device.tags = sorted(set(patch.tags))
    if patch.enabled is not None:
        device.enabled = patch.enabled
    await session.flush()
    return device


async def rotate_credentials(session: AsyncSession, device_id: int) -> Device:
    """New access token and device secret; the old ones stop working at once."""
    device = await get_device(session, device_id)
    device.access_token = _new_secret()
    device.device_secret = _new_secret()
    await session.flush()
    return device


async def check_credentials_key(session: AsyncSession) -> None:
    """Refuse to run with a credentials key that does not open the stored credentials.

    Run on, every product-key device would be refused at login and every token device unknown."""
    sealed = await session.scalar(select(Device.device_secret_sealed).order_by(Device.id).limit(1))
    if sealed is None:
        return
    try:
        sealing.keyring().open(sealed)
    except sealing.SealingError as exc:
        raise sealing.SealingError(
            "SKYLIFT_CREDENTIALS_KEY does not open the stored device credentials: after a key change, "
            "put the new key first and keep the old one after it until the next start has resealed them"
        ) from exc


async def reseal_credentials(session: AsyncSession) -> int:
    """Seal every device's credentials with the current key (after a key change); returns how many."""
    keyring = sealing.keyring()
    count = 0
    for device in (await session.scalars(select(Device))).all():
        device.access_token = device.access_token  # the setter seals under the current key, digest included
        device.device_secret_sealed = keyring.reseal(device.device_secret_sealed)
        if device.login_username_sealed is not None:
            device.login_username_sealed = keyring.reseal(device.login_username_sealed)
        if device.command_topic_sealed is not None:
            device.command_topic_sealed = keyring.reseal(device.command_topic_sealed)
        count += 1
    await session.flush()
    return count


async def list_devices(session: AsyncSession, product_id: int | None, tag: str | None = None) -> list[Device]:
    query = select(Device).options(selectinload(Device.versions), selectinload(Device.product)).order_by(Device.id)
    if product_id is not None:
        query = query.where(Device.product_id == product_id)
    if tag is not None:
        return [d for d in (await session.scalars(query)).all() if tag in (d.tags or [])]
    return list((await session.scalars(query)).all())


async def record_version(session: AsyncSession, device_id: int, module: str, version: str, now: datetime) -> None:
    row = await session.scalar(
        select(DeviceVersion).where(DeviceVersion.device_id == device_id, DeviceVersion.module == module)
    )
    if row is None:
        session.add(DeviceVersion(device_id=device_id, module=module, version=version, reported_at=now))
    else:
        row.version = version
        row.reported_at = now
    await session.flush()


async def version_distribution(session: AsyncSession, product_id: int, module: str) -> dict[str, int]:
    await get_product(session, product_id, field="id")
    rows = await session.execute(
        select(DeviceVersion.version, func.count())
        .join(Device, Device.id == DeviceVersion.device_id)
        .where(Device.product_id == product_id, DeviceVersion.module == canonical_module(module))
        .group_by(DeviceVersion.version)
    )
    return {version: count for version, count in rows.tuples()}
