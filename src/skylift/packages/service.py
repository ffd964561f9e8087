"""Firmware packages: immutable once created, hashed by the platform itself."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.kit.errors import Conflict, Invalid, NotFound
from skylift.kit.versions import same_version
from skylift.packages.models import Package, PackageFile
from skylift.packages.schemas import PackageFields, PackageFileOut, PackageOut, PackagePatch
from skylift.packages.upload import ReceivedForm
from skylift.registry import service as registry


def file_sign(package: Package, file: PackageFile) -> str:
    return file.md5 if package.sign_method == "MD5" else file.sha256


def package_out(package: Package) -> PackageOut:
    return PackageOut(
        id=package.id,
        product_id=package.product_id,
        module=package.module,
        name=package.name,
        version=package.version,
        type=package.type,
        source_version=package.source_version or None,
        sign_method=package.sign_method,
        sign=file_sign(package, package.files[0]),
        verify_required=package.verify_required,
        enabled=package.enabled,
        description=package.description,
        files=[PackageFileOut.model_validate(f) for f in package.files],
        created_at=package.created_at,
    )


def parse_fields(raw: dict[str, str]) -> PackageFields:
    try:
        return PackageFields.model_validate(raw)
    except ValidationError as exc:
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
    package = await session.scalar(select(Package).where(Package.id == package_id).options(selectinload(Package.files)))
    if package is None:
        raise NotFound(f"package {package_id} does not exist", field=field)
    return package


async def list_packages(session: AsyncSession, product_id: int | None) -> list[Package]:
    query = select(Package).options(selectinload(Package.files)).order_by(Package.id)
    if product_id is not None:
        query = query.where(Package.product_id == product_id)
    return list((await session.scalars(query)).all())


async def update_package(session: AsyncSession, package_id: int, patch: PackagePatch) -> Package:
    package = await get_package(session, package_id, field="id")
    if patch.description is not None:
        package.description = patch.description
    if patch.enabled is not None:
        package.enabled = patch.enabled
    await session.flush()
    return package


async def get_file(session: AsyncSession, file_id: int) -> PackageFile:
    file = await session.get(PackageFile, file_id)
    if file is None:
        raise NotFound(f"file {file_id} does not exist", field="file_id")
    return file
