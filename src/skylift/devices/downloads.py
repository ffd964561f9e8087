"""Package downloads over HTTP(S): signed expiring URLs, ETag, and Range for resume."""

from __future__ import annotations

import os
import re
import stat

import anyio
from fastapi import APIRouter, Request
from sqlalchemy.orm import selectinload
from starlette.background import BackgroundTask
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import FileResponse
from starlette.types import Receive, Scope, Send

from skylift.deps import ContextDep
from skylift.kit.canonical_headers import canonical_send
from skylift.kit.errors import Forbidden, Gone, NotFound
from skylift.kit.ids import Id
from skylift.kit.zero_copy import EXTENSION as ZERO_COPY
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


def single_range(range_header: str, size: int) -> tuple[int, int] | None:
    """(first byte, end) of a one-range `bytes=` header that the file satisfies; None for anything else."""
    match = _RANGE.match(range_header.strip())
    if match is None or size == 0:
        return None
    start, end = match.groups()
    if not start:
        if not end or int(end) == 0:
            return None
        return max(size - int(end), 0), size
    first = int(start)
    last = min(int(end), size - 1) if end else size - 1
    if first >= size or last < first:
        return None
    return first, last + 1


class DownloadResponse(FileResponse):
    """A file response (200, 206, HEAD, 416) whose header names go out as `Content-Length`, `ETag`...

    Device SDKs look for the exact bytes `Content-Length` in the response head, as nginx or an object
    store sends them. Starlette builds and reads its headers lower-cased, so they are respelled only
    on their way out. Where the server offers zero-copy sends (kit/zero_copy.py), a whole file or one
    range of it goes from the page cache to the socket; other requests (several ranges, `If-Range`, a
    range the file cannot satisfy, TLS) take Starlette's way."""

    chunk_size = 1024 * 1024  # where the file is read through Python (TLS): fewer, larger reads

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        send = canonical_send(send)
        zero_copy = ZERO_COPY in scope.get("extensions", {}) and scope["method"] == "GET"
        if zero_copy and await self._send_zero_copy(scope, send):
            if self.background is not None:
                await self.background()
            return
        await super().__call__(scope, receive, send)

    async def _send_zero_copy(self, scope: Scope, send: Send) -> bool:
        """Send the whole file or its one requested range without copying it through Python; False when
        this request needs Starlette's general way instead."""
        request_headers = Headers(scope=scope)
        if request_headers.get("if-range") is not None:
            return False
        try:
            file = await anyio.to_thread.run_sync(open, self.path, "rb")
        except OSError:
            return False
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                return False
            self.set_stat_headers(info)
            headers = MutableHeaders(raw=list(self.raw_headers))
            status, offset, count = self.status_code, 0, info.st_size
            range_header = request_headers.get("range")
            if range_header is not None:
                chosen = single_range(range_header, info.st_size)
                if chosen is None:
                    return False
                offset, end = chosen
                count = end - offset
                status = 206
                headers["content-range"] = f"bytes {offset}-{end - 1}/{info.st_size}"
                headers["content-length"] = str(count)
            await send({"type": "http.response.start", "status": status, "headers": headers.raw})
            await send({"type": ZERO_COPY, "file": file, "offset": offset, "count": count, "more_body": False})
            return True
        finally:
            await anyio.to_thread.run_sync(file.close)


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
    async with context.database.reading() as session:
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
