"""Payloads on the `/ota/device/...` topics, shared by token (002) and product-key (004) devices."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skylift.campaigns.state import MAX_DESC_LENGTH, is_valid_step
from skylift.devices.dialects.base import (
    MAX_MODULE_LENGTH,
    MAX_VERSION_LENGTH,
    DeviceEvent,
    MalformedMessage,
    ProgressReported,
    VersionReported,
    load_object,
    optional_text,
    required_text,
)


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


def _step(value: object) -> int:
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
        step=_step(body["step"]),
        desc=desc[:MAX_DESC_LENGTH],
        module=optional_text(body, "module", MAX_MODULE_LENGTH),
    )


PARSERS: dict[str, Callable[[bytes], DeviceEvent]] = {"inform": parse_inform, "progress": parse_progress}


def parse(kind: str, payload: bytes) -> DeviceEvent:
    parser = PARSERS.get(kind)
    if parser is None:
        raise MalformedMessage(f"unknown message kind {kind!r}")
    return parser(payload)
