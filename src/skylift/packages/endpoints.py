from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect

from skylift.context import AppContext
from skylift.deps import ContextDep, NowDep, OperatorDep, ReadingDep, SessionDep, ViewerDep
from skylift.kit.errors import BadRequest, NotFound, error_responses
from skylift.kit.guards import lift_body_limit
from skylift.kit.ids import ID_LIMIT, Id
from skylift.kit.pagination import PageDep
from skylift.kit.schemas import Page
from skylift.kit.strict import TextBool
from skylift.packages import service
from skylift.packages.models import Package
from skylift.packages.schemas import DownloadUrlOut, DownloadUrlRequest, PackageOut, PackagePatch
from skylift.packages.upload import UploadLimits, receive_form
from skylift.packages.urls import download_path
from skylift.system import audit
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
                        "product_id": {"type": "integer", "minimum": 1, "maximum": ID_LIMIT - 1},
                        "module": {"type": "string", "default": "default"},
                        "name": {"type": "string"},
                        "version": {"type": "string", "example": "1.2.0"},
                        "type": {"type": "string", "enum": ["full", "diff"], "default": "full"},
                        "sign_method": {"type": "string", "enum": ["MD5", "SHA256"], "default": "MD5"},
                        "verify_required": {"type": "boolean", "default": False},
                        "description": {"type": "string"},
                        "source_version": {
                            "type": "string",
                            "description": "Required for a diff package: the version(s) it applies to, "
                            "comma-separated (1.0.0,1.0.1)",
                        },
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                }
            }
        },
    }
}


@router.post(
    "",
    status_code=201,
    response_model=PackageOut,
    openapi_extra=_UPLOAD_SCHEMA,
    responses=error_responses(400, 413),
)
async def create_package(request: Request, context: ContextDep, session: SessionDep, actor: OperatorDep) -> PackageOut:
    """Upload a package; files are streamed to storage and hashed on the way (MD5 and SHA256).

    File names may be in any language (raw UTF-8 or RFC 5987 `filename*=`); they are kept as sent."""
    # The files stream under the run-time size limit, not the JSON body limit.
    lift_body_limit(request.scope)
    # Read the limits in a short transaction of their own: the upload must not hold a database lock.
    async with context.database.transaction() as params_session:
        parameters = await get_parameters(params_session)
    limits = UploadLimits(max_file_bytes=parameters.max_file_bytes, allowed_extensions=parameters.allowed_extensions)
    try:
        form = await receive_form(
            request.headers.get("content-type"), request.stream(), context.storage.open_upload, limits
        )
    except ClientDisconnect:
        # Not a server error: the partial files are already removed and nobody is left to answer.
        raise BadRequest("the client went away before the upload was complete", field="file") from None
    try:
        package = await service.create_package(session, form)
        audit.record(
            session,
            actor,
            "package.create",
            "package",
            package.id,
            version=package.version,
            files=[f.name for f in package.files],
        )
        return await _out(context, session, package)
    except BaseException:
        # The transaction rolls back: remove the files, stored or not (a crash is left to the start's sweep).
        await form.discard()
        raise


async def _out(context: AppContext, session: AsyncSession, package: Package) -> PackageOut:
    out = service.package_out(package)
    if package.verify_required and context.verification_of is not None:
        out.verification = await context.verification_of(session, package)
    return out


@router.get("", response_model=Page[PackageOut])
async def list_packages(
    context: ContextDep,
    session: ReadingDep,
    _: ViewerDep,
    page: PageDep,
    product_id: Id | None = None,
    module: Annotated[str | None, Query(max_length=64, description="Module name or alias")] = None,
    enabled: TextBool | None = None,
    type: Literal["full", "diff"] | None = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[PackageOut]:
    """Packages by id, one page at a time; every filter given must hold."""
    where = service.PackageFilter(product_id, module, enabled, type, version)
    packages, total = await service.list_packages(session, where, page)
    return page.answer([await _out(context, session, p) for p in packages], total)


@router.get("/{package_id}", response_model=PackageOut)
async def read_package(package_id: Id, context: ContextDep, session: ReadingDep, _: ViewerDep) -> PackageOut:
    return await _out(context, session, await service.get_package(session, package_id, field="id"))


@router.patch("/{package_id}", response_model=PackageOut)
async def patch_package(
    package_id: Id, body: PackagePatch, context: ContextDep, session: SessionDep, actor: OperatorDep, now: NowDep
) -> PackageOut:
    """Change the description, or enable / disable the package: disabling stops its rollout at once
    (its running campaigns pause, no notice goes out, its download URLs answer 410)."""
    package = await service.update_package(session, package_id, body)
    if body.enabled is not None and context.package_switched is not None:
        await context.package_switched(session, package, now)
    audit.record(session, actor, "package.update", "package", package_id, **body.model_dump(exclude_none=True))
    return await _out(context, session, package)


@router.post("/{package_id}/files/{file_id}/url", response_model=DownloadUrlOut)
async def file_download_url(
    package_id: Id,
    file_id: Id,
    body: DownloadUrlRequest,
    context: ContextDep,
    session: SessionDep,
    _: OperatorDep,
    now: NowDep,
) -> DownloadUrlOut:
    """A signed, expiring download URL for one file, for an operator or a manual test."""
    package = await service.get_package(session, package_id, field="id")
    file = next((f for f in package.files if f.id == file_id), None)
    if file is None:
        raise NotFound(f"package {package_id} has no file {file_id}", field="file_id")
    url = context.signer.sign(context.settings.resolved_public_url, download_path(file), body.ttl_seconds, now)
    return DownloadUrlOut(url=url, expires_at=now + timedelta(seconds=body.ttl_seconds))
