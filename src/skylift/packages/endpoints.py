from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from skylift.deps import AdminDep, ContextDep, SessionDep
from skylift.devices.downloads import download_path
from skylift.kit.errors import NotFound
from skylift.kit.schemas import ItemsOut
from skylift.packages import service
from skylift.packages.schemas import DownloadUrlOut, DownloadUrlRequest, PackageOut, PackagePatch
from skylift.packages.upload import UploadLimits, receive_form
from skylift.system.service import get_parameters

router = APIRouter(prefix="/packages", tags=["packages"])

_UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["product_id", "name", "version", "file"],
                    "properties": {
                        "product_id": {"type": "integer"},
                        "module": {"type": "string", "default": "default"},
                        "name": {"type": "string"},
                        "version": {"type": "string", "example": "1.2.0"},
                        "type": {"type": "string", "enum": ["full", "diff"], "default": "full"},
                        "sign_method": {"type": "string", "enum": ["MD5", "SHA256"], "default": "MD5"},
                        "verify_required": {"type": "boolean", "default": False},
                        "description": {"type": "string"},
                        "source_version": {"type": "string", "description": "Required for a diff package"},
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            }
        },
    }
}


@router.post("", status_code=201, response_model=PackageOut, openapi_extra=_UPLOAD_SCHEMA)
async def create_package(request: Request, context: ContextDep, session: SessionDep, _: AdminDep) -> PackageOut:
    """Upload a package; files are streamed to storage and hashed on the way (MD5 and SHA256)."""
    # Read the limits in a short transaction of their own: the upload must not hold a database lock.
    async with context.database.transaction() as params_session:
        parameters = await get_parameters(params_session)
    limits = UploadLimits(max_file_bytes=parameters.max_file_bytes, allowed_extensions=parameters.allowed_extensions)
    form = await receive_form(
        request.headers.get("content-type"), request.stream(), context.storage.open_upload, limits
    )
    try:
        package = await service.create_package(session, form)
    except BaseException:
        await form.discard()
        raise
    return service.package_out(package)


@router.get("", response_model=ItemsOut[PackageOut])
async def list_packages(session: SessionDep, _: AdminDep, product_id: int | None = None) -> ItemsOut[PackageOut]:
    packages = await service.list_packages(session, product_id)
    return ItemsOut(items=[service.package_out(p) for p in packages])


@router.get("/{package_id}", response_model=PackageOut)
async def read_package(package_id: int, session: SessionDep, _: AdminDep) -> PackageOut:
    return service.package_out(await service.get_package(session, package_id, field="id"))


@router.patch("/{package_id}", response_model=PackageOut)
async def patch_package(package_id: int, body: PackagePatch, session: SessionDep, _: AdminDep) -> PackageOut:
    return service.package_out(await service.update_package(session, package_id, body))


@router.post("/{package_id}/files/{file_id}/url", response_model=DownloadUrlOut)
async def file_download_url(
    package_id: int,
    file_id: int,
    body: DownloadUrlRequest,
    context: ContextDep,
    session: SessionDep,
    _: AdminDep,
) -> DownloadUrlOut:
    """A signed, expiring download URL for one file, for an operator or a manual test."""
    package = await service.get_package(session, package_id, field="id")
    file = next((f for f in package.files if f.id == file_id), None)
    if file is None:
        raise NotFound(f"package {package_id} has no file {file_id}", field="file_id")
    url = context.signer.sign(context.settings.resolved_public_url, download_path(file), body.ttl_seconds)
    return DownloadUrlOut(url=url, expires_at=datetime.now(UTC) + timedelta(seconds=body.ttl_seconds))
