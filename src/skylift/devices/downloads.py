"""Package downloads over HTTP(S): signed expiring URLs, ETag, and Range for resume."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from sqlalchemy.orm import selectinload
from starlette.background import BackgroundTask
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from skylift.deps import ContextDep
from skylift.kit.canonical_headers import canonical_send
from skylift.kit.errors import Forbidden, Gone, NotFound
from skylift.kit.ids import Id
from skylift.packages.models import PackageFile
from skylift.packages.urls import DOWNLOAD_ROUTE, download_path

router = APIRouter(tags=["downloads"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def reaches_end(range_header: str | None, size: int) -> bool:
    """Whether a response to this Range header carries the file's last byte (a finished download)."""
    if not range_header:
        return True
    match = _RANGE.match(range_header.strip())
    if match is None:
        return False
    start, end = match.groups()
    if not start:
        return bool(end)
    return not end or int(end) >= size - 1


class DownloadResponse(FileResponse):
    """A file response (200, 206, HEAD, 416) whose header names go out as `Content-Length`, `ETag`...

    Device SDKs look for the exact bytes `Content-Length` in the response head, as nginx or an object
    store sends them. Starlette builds and reads its headers lower-cased, so they are respelled only
    on their way out."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, canonical_send(send))


@router.api_route(DOWNLOAD_ROUTE, methods=["GET", "HEAD"], summary="Download a package file (signed URL)")
async def download(
    file_id: Id,
    filename: str,
    request: Request,
    context: ContextDep,
    expires: str = "",
    signature: str = "",
    grant: str = "",
) -> DownloadResponse:
    async with context.database.transaction() as session:
        file = await session.get(PackageFile, file_id, options=[selectinload(PackageFile.package)])
    if file is None or file.name != filename:
        raise NotFound("no such file", field="file_id")
    if not context.signer.verify(download_path(file), expires, signature, context.clock.now(), grant):
        raise Forbidden("the download URL is invalid or has expired", field="signature")
    if not file.package.enabled:
        raise Gone("the package was disabled: its files are not handed out", field="file_id")
    background = None
    if grant and request.method == "GET" and reaches_end(request.headers.get("range"), file.size):
        background = BackgroundTask(context.device_hub.download_finished, grant)
    return DownloadResponse(
        context.storage.path(file.storage_key),
        media_type="application/octet-stream",
        filename=file.name,
        headers={"ETag": f'"{file.sha256}"', "Cache-Control": "private, max-age=0"},
        background=background,
    )
