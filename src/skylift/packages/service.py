"""Firmware packages: immutable once created, hashed by the platform itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.kit.errors import Conflict, Invalid, NotFound
from skylift.kit.nul import refuse_nul
from skylift.kit.pagination import PageRequest, fetch_page
from skylift.kit.versions import same_version
from skylift.packages.models import Package, PackageFile
from skylift.packages.schemas import PackageFields, PackageFileOut, PackageOut, PackagePatch
from skylift.packages.upload import ReceivedForm
from skylift.registry import service as registry


def file_sign(package: Package, file: PackageFile) -> str:
    return file.md5 if package.sign_method == "MD5" else file.sha256


def source_versions(package: Package) -> list[str]:
    """The versions a diff package applies to; none for a full image."""
    return [v for v in package.source_version.split(",") if v]


def package_out(package: Package) -> PackageOut:
    return PackageOut(
        id=package.id,
        product_id=package.product_id,
        module=package.module,
        name=package.name,
        version=package.version,
        type=package.type,
        source_version=package.source_version or None,
        source_versions=source_versions(package),
        sign_method=package.sign_method,
        sign=file_sign(package, package.files[0]),
        verify_required=package.verify_required,
        enabled=package.enabled,
        description=package.description,
        files=[PackageFileOut.model_validate(f) for f in package.files],
        created_at=package.created_at,
    )


def parse_fields(raw: dict[str, str]) -> PackageFields:
    refuse_nul(raw)
    try:
        return PackageFields.model_validate(raw)
    except ValidationError as exc:
        unknown = [str(e["loc"][0]) for e in exc.errors() if e["type"] == "extra_forbidden" and e["loc"]]
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise Invalid(f"unknown field{plural}: {', '.join(unknown)}", field=unknown[0]) from exc
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else None
        message = first["msg"].removeprefix("Value error, ")
        if field is None and ":" in message:
            field, message = message.split(":", 1)
            message = message.strip()
        raise Invalid(f"{field}: {message}" if field else message, field=field) from exc


async def create_package(session: AsyncSession, form: ReceivedForm) -> Package:
    """Record an uploaded package; the caller discards the stored files if this raises."""
    fields = parse_fields(form.fields)
    if not form.files:
        raise Invalid("a package needs at least one file part named 'file'", field="file")
    await registry.get_product(session, fields.product_id)
    module = await registry.require_module(session, fields.product_id, fields.module)
    siblings = await session.execute(
        select(Package.id, Package.version).where(
            Package.product_id == fields.product_id,
            Package.module == module,
            Package.type == fields.type,
            Package.source_version == fields.source_version,
            Package.deleted_at.is_(None),
        )
    )
    # `v1.0` and `1.0.0` are the same version, so compare parsed versions, not text.
    duplicate = next((pid for pid, version in siblings.tuples() if same_version(version, fields.version)), None)
    if duplicate is not None:
        raise Conflict(
            f"version {fields.version} of module {module!r} already exists (package {duplicate}); "
            "packages are immutable, create a new version instead",
            field="version",
        )
    package = Package(
        product_id=fields.product_id,
        module=module,
        name=fields.name,
        version=fields.version,
        type=fields.type,
        source_version=fields.source_version,
        sign_method=fields.sign_method,
        verify_required=fields.verify_required,
        description=fields.description,
    )
    for position, received in enumerate(form.files):
        md5, sha256 = received.sink.digests()
        package.files.append(
            PackageFile(
                position=position,
                name=received.filename,
                size=received.sink.size,
                md5=md5,
                sha256=sha256,
                storage_key=received.sink.key,
            )
        )
    session.add(package)
    await session.flush()
    # Files move into place only once the row is accepted, right before the request commits it.
    for received in form.files:
        await received.sink.commit()
    return package


async def get_package(session: AsyncSession, package_id: int, field: str = "package_id") -> Package:
    """A package in service; a deleted one is not found (its closed campaigns still name it)."""
    package = await session.scalar(
        select(Package)
        .where(Package.id == package_id, Package.deleted_at.is_(None))
        .options(selectinload(Package.files))
    )
    if package is None:
        raise NotFound(f"package {package_id} does not exist", field=field)
    return package


@dataclass(frozen=True)
class PackageFilter:
    product_id: int | None = None
    module: str | None = None
    enabled: bool | None = None
    type: str | None = None
    version: str | None = None


async def list_packages(session: AsyncSession, where: PackageFilter, page: PageRequest) -> tuple[list[Package], int]:
    """Packages in service by id; `module` may be an alias, `version` any spelling of it (`v1.0` is `1.0.0`)."""
    query = select(Package).where(Package.deleted_at.is_(None)).order_by(Package.id)
    if where.product_id is not None:
        query = query.where(Package.product_id == where.product_id)
    if where.module is not None:
        names = (
            [await registry.require_module(session, where.product_id, where.module)]
            if where.product_id is not None
            else await registry.modules_named(session, where.module)
        )
        query = query.where(Package.module.in_(names))
    if where.enabled is not None:
        query = query.where(Package.enabled.is_(where.enabled))
    if where.type is not None:
        query = query.where(Package.type == where.type)
    if where.version is not None:
        stored = await session.scalars(query.with_only_columns(Package.version).order_by(None).distinct())
        query = query.where(Package.version.in_([v for v in stored if same_version(v, where.version)]))
    return await fetch_page(session, query, page, selectinload(Package.files))


async def update_package(session: AsyncSession, package_id: int, patch: PackagePatch) -> Package:
    package = await get_package(session, package_id, field="id")
    if patch.description is not None:
        package.description = patch.description
    if patch.enabled is not None:
        package.enabled = patch.enabled
    await session.flush()
    return package


async def remove(session: AsyncSession, package: Package, now: datetime) -> list[str]:
    """Delete a package: its file rows go, its row stays (deleted) for the campaigns that name it.

    Returns the storage keys of its files, for the caller to remove once the deletion is committed."""
    keys = [f.storage_key for f in package.files]
    package.files.clear()
    package.deleted_at = now
    package.enabled = False
    await session.flush()
    return keys


async def get_file(session: AsyncSession, file_id: int) -> PackageFile:
    file = await session.get(PackageFile, file_id)
    if file is None:
        raise NotFound(f"file {file_id} does not exist", field="file_id")
    return file
