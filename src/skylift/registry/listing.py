"""Lists of products and devices: filters in the database, one page at a time, ordered by id."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Select, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.kit.pagination import PageRequest, fetch_page
from skylift.kit.versions import same_version
from skylift.registry.models import DEFAULT_MODULE, Device, DeviceVersion, Product
from skylift.registry.service import modules_named, require_module


async def list_products(session: AsyncSession, page: PageRequest) -> tuple[list[Product], int]:
    return await fetch_page(session, select(Product).order_by(Product.id), page, selectinload(Product.modules))


@dataclass(frozen=True)
class DeviceFilter:
    """What `GET /devices` narrows by; every given filter must hold (tags: any of them)."""

    product_id: int | None = None
    q: str | None = None
    online: bool | None = None
    enabled: bool | None = None
    tags: list[str] = field(default_factory=list)
    module: str | None = None
    version: str | None = None
    include_deleted: bool = False


async def list_devices(session: AsyncSession, where: DeviceFilter, page: PageRequest) -> tuple[list[Device], int]:
    query = select(Device).order_by(Device.id)
    if not where.include_deleted:
        query = query.where(Device.deleted_at.is_(None))
    if where.product_id is not None:
        query = query.where(Device.product_id == where.product_id)
    if where.q:
        prefix = where.q.lower()
        query = query.where(
            or_(
                func.lower(Device.name).startswith(prefix, autoescape=True),
                func.lower(Device.address).startswith(prefix, autoescape=True),
            )
        )
    if where.online is not None:
        query = query.where(Device.online.is_(where.online))
    if where.enabled is not None:
        query = query.where(Device.enabled.is_(where.enabled))
    if where.tags:
        query = query.where(_has_any_tag(session, where.tags))
    if where.module is not None or where.version is not None:
        query = await _reporting(session, query, where)
    return await fetch_page(session, query, page, selectinload(Device.versions), selectinload(Device.product))


def _has_any_tag(session: AsyncSession, tags: list[str]) -> ColumnElement[bool]:
    # Tags are a JSON array; both databases expand one into rows named `value`.
    expand = func.json_each if session.get_bind().dialect.name == "sqlite" else func.json_array_elements_text
    elements = expand(Device.tags).table_valued("value").alias("tag")
    return exists(select(1).select_from(elements).where(elements.c.value.in_(tags)))


async def _reporting(session: AsyncSession, query: Select[Device], where: DeviceFilter) -> Select[Device]:
    """Devices that reported the module (by name or alias), at the version when one is given."""
    if where.product_id is not None:
        names = [await require_module(session, where.product_id, where.module)]
    elif where.module is not None:
        names = await modules_named(session, where.module)
    else:
        names = [DEFAULT_MODULE]
    reports = select(DeviceVersion.device_id).where(DeviceVersion.module.in_(names))
    if where.version is not None:
        reports = reports.where(DeviceVersion.version.in_(await _spellings(session, names, where.version)))
    return query.where(Device.id.in_(reports))


async def _spellings(session: AsyncSession, modules: list[str], version: str) -> list[str]:
    """The reported texts that are `version` (`v1.0` and `1.0.0` are one version): few, whatever the fleet."""
    reported = await session.scalars(select(DeviceVersion.version).where(DeviceVersion.module.in_(modules)).distinct())
    return [version, *(text for text in reported if same_version(text, version))]
