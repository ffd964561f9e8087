"""Alibaba Cloud IoT (seed 004) and SagooIOT devices: `{ProductKey}/{DeviceName}` in their topics."""

from __future__ import annotations

from typing import Any

from skylift.devices.dialects.base import MessageId, Notice, dump_payload
from skylift.devices.dialects.token import SIGN_METHOD_NAMES, file_fields
from skylift.registry.models import DEFAULT_MODULE

# notice_style → (code, spelling of signMethod)
STYLES: dict[str, tuple[str, dict[str, str]]] = {
    "alibaba": ("1000", SIGN_METHOD_NAMES),
    "sagoo": ("200", {"MD5": "MD5", "SHA256": "SHA256"}),
}


def notice_data(notice: Notice, style: str = "alibaba") -> dict[str, Any]:
    """The `data` object of a notice; Alibaba's firmware/get_reply carries the same one."""
    _, method_names = STYLES.get(style, STYLES["alibaba"])
    data: dict[str, Any] = {"version": notice.version}
    data.update(file_fields(notice))
    data["signMethod"] = method_names[notice.sign_method]
    if notice.module != DEFAULT_MODULE:
        data["module"] = notice.module
    if notice.is_diff:
        data["isDiff"] = 1  # Alibaba's field
    # extData last: Link SDK 4 takes the first matching key anywhere in the payload.
    if notice.ext_data:
        data["extData"] = notice.ext_data
    return data


def render_notice(notice: Notice, style: str = "alibaba") -> bytes:
    return _envelope(notice.message_id, notice_data(notice, style), style)


def render_nothing_pending(message_id: MessageId, style: str = "alibaba") -> bytes:
    """The answer to a request when no upgrade is open for the module: the envelope with empty data."""
    return _envelope(message_id, {}, style)


def _envelope(message_id: MessageId, data: dict[str, Any], style: str) -> bytes:
    code, _ = STYLES.get(style, STYLES["alibaba"])
    envelope = {"code": code, "data": data, "id": message_id, "message": "success"}
    return dump_payload(envelope)
