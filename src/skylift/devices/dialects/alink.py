"""Alibaba's device SDK (aiot-linkkit) on `/sys/{ProductKey}/{DeviceName}/thing/...`.

It asks for its upgrade on `thing/ota/firmware/get` and fetches files in blocks on
`thing/file/download`; the answers go to the same topics with `_reply` appended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skylift.devices.dialects import product_key
from skylift.devices.dialects.base import DeviceEvent, MessageId, Notice, UpgradeRequested, dump_payload
from skylift.devices.dialects.ota import parse_block_request, parse_request


def parse_firmware_get(payload: bytes) -> UpgradeRequested:
    """`{"id": N, "version": "1.0", "params": {"module": "MCU"}}`: the shape of seed 004's request."""
    return parse_request(payload)


PARSERS: dict[str, Callable[[bytes], DeviceEvent]] = {
    "firmware_get": parse_firmware_get,
    "download": parse_block_request,
}


def render_get_reply(message_id: MessageId, notice: Notice | None, style: str = "alibaba") -> bytes:
    """The notice's `data` (empty when nothing is pending) in Alibaba's reply envelope, code 200."""
    data: dict[str, Any] = product_key.notice_data(notice, style) if notice is not None else {}
    return dump_payload({"code": 200, "data": data, "id": message_id, "message": "success"})
