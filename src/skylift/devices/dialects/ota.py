"""Payloads on the `/ota/device/...` topics, shared by token (002) and product-key (004) devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skylift.campaigns.state import MAX_DESC_LENGTH, is_valid_step
from skylift.devices.dialects.base import (
    MAX_MODULE_LENGTH,
    MAX_VERSION_LENGTH,
    BlockRequested,
    DeviceEvent,
    MalformedMessage,
    ProgressReported,
    UpgradeRequested,
    VersionReported,
    load_object,
    optional_message_id,
    optional_text,
    required_text,
    whole_number,
)

MAX_FILE_TOKEN_LENGTH = 128


def _params(message: dict[str, Any]) -> dict[str, Any]:
    params = message.get("params")
    if not isinstance(params, dict):
        raise MalformedMessage("params must be an object")
    return params


def parse_inform(payload: bytes) -> VersionReported:
    """`{"id": "1", "params": {"version": "v1.0.1", "module": "default"}}`; module optional."""
    params = _params(load_object(payload))
    return VersionReported(
        module=optional_text(params, "module", MAX_MODULE_LENGTH),
        version=required_text(params, "version", MAX_VERSION_LENGTH).strip(),
    )


def parse_step(value: object) -> int:
    """A progress step: a whole number (or its text), 0..100 percent or -1..-4 (failures)."""
    if isinstance(value, bool):
        raise MalformedMessage("step must be a number")
    if isinstance(value, int):
        step = value
    elif isinstance(value, str):
        try:
            step = int(value.strip())
        except ValueError as exc:
            raise MalformedMessage("step must be a whole number") from exc
    else:
        raise MalformedMessage("step must be a number")
    if not is_valid_step(step):
        raise MalformedMessage("step must be 0..100 or -1..-4")
    return step


def parse_progress(payload: bytes) -> ProgressReported:
    """Seed 002's flat `{"step", "desc", "module"}` or seed 004's `{"id", "params": {...}}`."""
    message = load_object(payload)
    body = message["params"] if isinstance(message.get("params"), dict) else message
    if "step" not in body:
        raise MalformedMessage("step is missing")
    desc = body.get("desc", "")
    if not isinstance(desc, str):
        raise MalformedMessage("desc must be a string")
    return ProgressReported(
        step=parse_step(body["step"]),
        desc=desc[:MAX_DESC_LENGTH],
        module=optional_text(body, "module", MAX_MODULE_LENGTH),
    )


def _object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


def parse_request(payload: bytes) -> UpgradeRequested:
    """`{"id": 1, "params": {"version": "1.0.1", "module": "MCU"}}`; no module means the default module.

    `version` is what the device runs; it is checked but not recorded (a request is not a report).
    """
    message = load_object(payload)
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise MalformedMessage("params must be an object")
    optional_text(params, "version", MAX_VERSION_LENGTH)
    return UpgradeRequested(
        module=optional_text(params, "module", MAX_MODULE_LENGTH),
        message_id=optional_message_id(message),
    )


def parse_block_request(payload: bytes) -> BlockRequested:
    """Alibaba's file/download request.

    `{"id", "version": "1.0", "params": {"fileToken", "fileInfo": {"streamId", "fileId"},
    "fileBlock": {"size", "offset"}}}`; whether the block exists is the server's to judge.
    """
    message = load_object(payload, trailing_commas=True)
    params = _params(message)
    file_info = _object(params, "fileInfo")
    file_block = _object(params, "fileBlock")
    return BlockRequested(
        message_id=optional_message_id(message),
        file_token=optional_text(params, "fileToken", MAX_FILE_TOKEN_LENGTH) or "",
        stream_id=whole_number(file_info, "streamId"),
        file_id=whole_number(file_info, "fileId"),
        offset=whole_number(file_block, "offset"),
        size=whole_number(file_block, "size"),
    )


PARSERS: dict[str, Callable[[bytes], DeviceEvent]] = {
    "inform": parse_inform,
    "progress": parse_progress,
    "request": parse_request,
    "download": parse_block_request,
}


def parse(kind: str, payload: bytes) -> DeviceEvent:
    parser = PARSERS.get(kind)
    if parser is None:
        raise MalformedMessage(f"unknown message kind {kind!r}")
    return parser(payload)
