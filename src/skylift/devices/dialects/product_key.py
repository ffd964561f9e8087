"""Alibaba Cloud IoT (seed 004) and SagooIOT devices: `{ProductKey}/{DeviceName}` in their topics."""

from __future__ import annotations

import json
from typing import Any

from skylift.devices.dialects.base import Notice
from skylift.devices.dialects.token import SIGN_METHOD_NAMES, file_fields
from skylift.registry.models import DEFAULT_MODULE

# notice_style → (code, spelling of signMethod)
STYLES: dict[str, tuple[str, dict[str, str]]] = {
    "alibaba": ("1000", SIGN_METHOD_NAMES),
    "sagoo": ("200", {"MD5": "MD5", "SHA256": "SHA256"}),
}


def render_notice(notice: Notice, style: str = "alibaba") -> bytes:
    code, method_names = STYLES.get(style, STYLES["alibaba"])
    data: dict[str, Any] = {"version": notice.version}
    data.update(file_fields(notice))
    data["signMethod"] = method_names[notice.sign_method]
    if notice.module != DEFAULT_MODULE:
        data["module"] = notice.module
    if notice.ext_data:
        data["extData"] = notice.ext_data
    envelope = {"code": code, "data": data, "id": notice.message_id, "message": "success"}
    return json.dumps(envelope, ensure_ascii=False).encode()
