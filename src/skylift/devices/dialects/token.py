"""ThingsPanel devices (seed 002): the access token names the device in its topics."""

from __future__ import annotations

import json
from typing import Any

from skylift.devices.dialects.base import Notice
from skylift.registry.models import DEFAULT_MODULE

# Seed 002's example spells the method this way; Alibaba's SDK compares it case-sensitively.
SIGN_METHOD_NAMES = {"MD5": "Md5", "SHA256": "SHA256"}


def file_fields(notice: Notice) -> dict[str, Any]:
    """size/url/sign for a one-file package; a `files` list when there are several (Alibaba's form)."""
    if len(notice.files) == 1:
        only = notice.files[0]
        return {"size": only.size, "url": only.url, "md5": only.md5, "sign": notice.sign_of(only)}
    return {
        "files": [
            {
                "fileName": f.name,
                "fileSize": f.size,
                "fileUrl": f.url,
                "fileMd5": f.md5,
                "fileSign": notice.sign_of(f),
            }
            for f in notice.files
        ]
    }


def render_notice(notice: Notice) -> bytes:
    params: dict[str, Any] = {"version": notice.version}
    fields = file_fields(notice)
    fields.pop("md5", None)
    params.update(fields)
    params["signMethod"] = SIGN_METHOD_NAMES[notice.sign_method]
    if notice.module != DEFAULT_MODULE:
        params["module"] = notice.module
    if notice.ext_data:
        params["extData"] = notice.ext_data
    return json.dumps({"id": str(notice.message_id), "code": 200, "params": params}, ensure_ascii=False).encode()
