"""Products, modules and devices."""

from __future__ import annotations

import secrets
import string
from collections.abc import Collection
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from skylift.db.chunks import id_chunks
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


async def product_for_import(session: AsyncSession, product_id: int | None, product_key: str | None) -> Product:
    """The product named by exactly one of its id and its key."""
    if (product_id is None) == (product_key is None):
        raise Invalid("name the product by product_id or by product_key (one of them)", field="product_id")
    if product_id is not None:
        return await get_product(session, product_id)
    product = await session.scalar(select(Product).where(Product.product_key == product_key))
    if product is None:
        raise NotFound(f"no product has the key {product_key!r}", field="product_key")
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


async def create_module(session: AsyncSession, data: ModuleCreate) -> Module:
    product = await get_product(session, data.product_id)
    if data.name in MODULE_ALIASES:
        raise Invalid(f"{data.name!r} is an alias of the default module", field="name")
    if any(module.name == data.name for module in product.modules):
        raise Conflict(f"product {product.id} already has a module {data.name!r}", field="name")
    _check_names_free(product, data.name, "name", None)
    if data.alias:
        _check_names_free(product, data.alias, "alias", None)
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


def _check_names_free(product: Product, word: str, field: str, module_id: int | None) -> None:
    # A module is named by its name or its alias wherever a module is asked for: each word names one module.
    for module in product.modules:
        if module.id != module_id and word in (module.name, module.alias):
            raise Conflict(f"{word!r} already names module {module.name!r} of product {product.id}", field=field)
    if word in MODULE_ALIASES and field == "alias":
        raise Conflict(f"{word!r} always names the default module", field=field)


async def get_module(session: AsyncSession, module_id: int) -> Module:
    module = await session.get(Module, module_id)
    if module is None:
        raise NotFound(f"module {module_id} does not exist", field="id")
    return module


async def update_module(session: AsyncSession, module_id: int, patch: ModulePatch) -> Module:
    """Alias, description and version property; also of the default module."""
    module = await get_module(session, module_id)
    product = await get_product(session, module.product_id)
    if patch.version_property is not None:
        _check_property_free(product, patch.version_property, module.id)
        module.version_property = patch.version_property
    if patch.alias is not None:
        if patch.alias and not (module.name == DEFAULT_MODULE and patch.alias in MODULE_ALIASES):
            _check_names_free(product, patch.alias, "alias", module.id)
        module.alias = patch.alias
    if patch.description is not None:
        module.description = patch.description
    await session.flush()
    return module


async def _named(session: AsyncSession, product_id: int, name: str | None) -> str | None:
    """The product's module that `name` names (its name, or else its alias), or None."""
    word = canonical_module(name)
    found = {
        module_name: alias
        for module_name, alias in (
            await session.execute(
                select(Module.name, Module.alias).where(
                    Module.product_id == product_id, or_(Module.name == word, Module.alias == word)
                )
            )
        ).tuples()
    }
    if word in found:
        return word
    return next(iter(found), None)


async def require_module(session: AsyncSession, product_id: int, name: str | None, field: str = "module") -> str:
    """The name of the product's module called `name` or aliased so (`main` or nothing: the default)."""
    module = await _named(session, product_id, name)
    if module is None:
        raise Invalid(f"product {product_id} has no module {name!r} (by name or alias); create it first", field=field)
    return module


async def device_module(session: AsyncSession, device_id: int, name: str | None) -> str:
    """The module a device's message names: by name or by its product's alias; an unknown name is kept."""
    word = canonical_module(name)
    if word == DEFAULT_MODULE:
        return word  # most messages name no module: no query
    product_id = await session.scalar(select(Device.product_id).where(Device.id == device_id))
    if product_id is None:
        return word
    return await _named(session, product_id, word) or word


async def modules_named(session: AsyncSession, name: str) -> list[str]:
    """Module names that `name` stands for in any product (by name or alias): for filters across products."""
    word = canonical_module(name)
    rows = await session.execute(select(Module.name).where(or_(Module.name == word, Module.alias == word)).distinct())
    return sorted({word, *rows.scalars()})


def _new_secret() -> str:
    return secrets.token_hex(16)


async def create_device(session: AsyncSession, data: DeviceCreate) -> Device:
    product = await get_product(session, data.product_id)
    if (
        await session.scalar(
            select(Device.id).where(
                Device.product_id == product.id, Device.name == data.name, Device.deleted_at.is_(None)
            )
        )
        is not None
    ):
        raise Conflict(f"product {product.id} already has a device named {data.name!r}", field="name")
    gateway = await _gateway_for(session, data)
    device = new_device(product, data, gateway)
    session.add(device)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("the device could not be registered; try again", field="name") from exc
    ready_to_show(product, [device])
    return device


def new_device(product: Product, data: DeviceCreate, gateway: Device | None) -> Device:
    """A device of `product` with fresh credentials (not added to a session): its name, gateway and address
    must have been checked."""
    return Device(
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
        node=gateway.node if gateway else None,
    )


def ready_to_show(product: Product, devices: list[Device]) -> None:
    """New devices show their product, and no versions yet, without a query."""
    for device in devices:
        set_committed_value(device, "product", product)
        set_committed_value(device, "versions", [])


async def _gateway_for(session: AsyncSession, data: DeviceCreate) -> Device | None:
    """The gateway a new sub-device is registered under (any device can be one, but not a sub-device)."""
    if data.gateway_id is None and data.address is None:
        return None
    if data.gateway_id is None:
        raise Invalid("a sub-device's address needs the gateway_id of its gateway", field="gateway_id")
    if data.address is None:
        raise Invalid("a sub-device needs the address its gateway names it by", field="address")
    gateway = await session.get(Device, data.gateway_id)
    if gateway is None or gateway.deleted_at is not None:
        raise NotFound(f"device {data.gateway_id} does not exist", field="gateway_id")
    if gateway.gateway_id is not None:
        raise Invalid(f"device {gateway.id} is itself a sub-device and cannot be a gateway", field="gateway_id")
    taken = await session.scalar(
        select(Device.id).where(
            Device.gateway_id == gateway.id, Device.address == data.address, Device.deleted_at.is_(None)
        )
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
        deleted_at=device.deleted_at,
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


async def get_device_in_service(session: AsyncSession, device_id: int, field: str = "device_id") -> Device:
    """The device, unless it was decommissioned: a deleted device is history and changes no more."""
    device = await get_device(session, device_id)
    if device.deleted_at is not None:
        raise Conflict(f"device {device_id} was deleted on {device.deleted_at:%Y-%m-%d %H:%M} UTC", field=field)
    return device


async def update_device(session: AsyncSession, device_id: int, patch: DevicePatch) -> Device:
    device = await get_device_in_service(session, device_id)
    if patch.tags is not None:
        device.tags = sorted(set(patch.tags))
    if patch.enabled is not None:
        device.enabled = patch.enabled
        if not patch.enabled:
            device.disconnect_requested = True  # by whichever replica holds its connection
    await session.flush()
    return device


async def rotate_credentials(session: AsyncSession, device_id: int) -> Device:
    """New access token and device secret; the old ones stop working at once."""
    device = await get_device_in_service(session, device_id)
    device.access_token = _new_secret()
    device.device_secret = _new_secret()
    device.disconnect_requested = True  # the connection made with the old ones, on whichever replica
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


def decommission(device: Device, now: datetime) -> None:
    """Take a device out of service for good: refused at login from now on, its history kept."""
    device.deleted_at = now
    device.enabled = False
    device.online = device.listening = device.relaying = False
    device.disconnect_requested = True


# The reported versions of the devices whose reports a batch applies, loaded at once (`preload_versions`).
_VERSIONS_KEY = "skylift_versions"


async def preload_versions(session: AsyncSession, device_ids: Collection[int]) -> None:
    """Load these devices' reported versions in one query: their version reports in this transaction then
    need no query each."""
    known: dict[int, dict[str, DeviceVersion]] = session.info.setdefault(_VERSIONS_KEY, {})
    wanted = sorted(set(device_ids) - known.keys())
    for chunk in id_chunks(wanted):
        for device_id in chunk:
            known[device_id] = {}
        for row in await session.scalars(select(DeviceVersion).where(DeviceVersion.device_id.in_(chunk))):
            known[row.device_id][row.module] = row


async def record_version(session: AsyncSession, device_id: int, module: str, version: str, now: datetime) -> None:
    preloaded = session.info.get(_VERSIONS_KEY, {}).get(device_id)
    if preloaded is not None:
        row = preloaded.get(module)
    else:
        row = await session.scalar(
            select(DeviceVersion).where(DeviceVersion.device_id == device_id, DeviceVersion.module == module)
        )
    if row is None:
        row = DeviceVersion(device_id=device_id, module=module, version=version, reported_at=now)
        session.add(row)
        if preloaded is not None:
            preloaded[module] = row
    else:
        row.version = version
        row.reported_at = now
    if preloaded is None:
        await session.flush()


async def version_distribution(session: AsyncSession, product_id: int, module: str) -> tuple[str, dict[str, int]]:
    """The module's name (`module` may be an alias) and how many devices in service report each version."""
    await get_product(session, product_id, field="id")
    module_name = await require_module(session, product_id, module)
    rows = await session.execute(
        select(DeviceVersion.version, func.count())
        .join(Device, Device.id == DeviceVersion.device_id)
        .where(Device.product_id == product_id, Device.deleted_at.is_(None), DeviceVersion.module == module_name)
        .group_by(DeviceVersion.version)
    )
    return module_name, {version: count for version, count in rows.tuples()}
