"""Where a package file is downloaded from: one path shape for the route that serves it and the URLs that name it."""

from __future__ import annotations

from urllib.parse import quote

from skylift.packages.models import PackageFile

DOWNLOAD_ROUTE = "/dl/{file_id}/{filename}"


def download_path(file: PackageFile) -> str:
    return DOWNLOAD_ROUTE.format(file_id=file.id, filename=quote(file.name))
