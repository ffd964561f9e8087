"""EZtCloud devices (seed 003): property reports, `otaCheck` events and `otaUpgrade` commands.

Topics carry the username the device logged in with: `attributes/{u}`, `event_report/{u}` and
`command_reply/{u}` go up, `command_send/{u}` comes down. A gateway speaks for its sub-devices on the
`gateway_` variants of the same topics, wrapping each message as `{"device": "<address>", ...}`.

Reply meanings (`command_reply`), decided here because 003 leaves them open; the body is the
message's `result` or `params` object, or the message itself:
- `step` (0..100, or -1..-4): progress exactly as on `/ota/device/progress/...`;
- otherwise `code` (or `success`): 0, 200, "0", "200", "success" or `true` only acknowledge the command
  (no state change); any other code, or `"success": false`, fails the attempt as "upgrade failed".
A reply whose `method` is not `otaUpgrade`, and an event other than `otaCheck`, change nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skylift.campaigns.state import MAX_DESC_LENGTH
from skylift.devices.dialects.base import (
    MAX_MODULE_LENGTH,
    MAX_VERSION_LENGTH,
    MalformedMessage,
    MessageId,
    Notice,
    ProgressReported,
    UpgradeRequested,
    dump_payload,
    load_object,
    optional_message_id,
    optional_text,
    required_text,
)
from skylift.devices.dialects.ota import parse_step
from skylift.registry.models import DEFAULT_MODULE

CHECK_METHOD = "otaCheck"
UPGRADE_METHOD = "otaUpgrade"
COMMAND_NAME = "OTA升级"
# What 003 calls the whole-device module (Skylift's `default`).
MAIN_MODULE = "main"
MAX_ADDRESS_LENGTH = 64
MAX_METHOD_LENGTH = 64
MAX_CODE_LENGTH = 32
SUCCESS_CODES = frozenset({"0", "200", "success"})


@dataclass(frozen=True)
class PropertiesReported:
    """An attributes report: property → value as text. Only text and number values are kept (at most
    64 characters): other properties of the device are not Skylift's business."""

    values: dict[str, str]


@dataclass(frozen=True)
class Noted:
    """A well-formed message that changes nothing: another event, a reply to another command, an ack."""

    what: str


EztEvent = PropertiesReported | UpgradeRequested | ProgressReported | Noted


@dataclass(frozen=True)
class SubDeviceMessage:
    """A gateway's message for the sub-device it names by `address`."""

    address: str
    event: EztEvent


EztMessage = EztEvent | SubDeviceMessage


def _object(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        raise MalformedMessage(f"{key} must be an object")
    return value


def properties(values: dict[str, Any]) -> PropertiesReported:
    kept: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue  # floats arrive as text (see load_object); NaN, objects and lists are not versions
        text = str(value).strip() if isinstance(value, str) else str(value)
        if text and len(text) <= MAX_VERSION_LENGTH:
            kept[name] = text
    return PropertiesReported(kept)


def event(message: dict[str, Any]) -> UpgradeRequested | Noted:
    """`{"method": "otaCheck", "params": {"module": "MCU"}, "id": 1000}`; params and id may be left out."""
    method = required_text(message, "method", MAX_METHOD_LENGTH)
    params = message.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise MalformedMessage("params must be an object")
    message_id = optional_message_id(message)
    if method != CHECK_METHOD:
        return Noted(f"event {method}")
    return UpgradeRequested(module=optional_text(params, "module", MAX_MODULE_LENGTH), message_id=message_id)


def _code(value: object) -> str:
    if isinstance(value, bool):
        return "success" if value else "failure"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and len(value) <= MAX_CODE_LENGTH:
        return value.strip().lower()
    raise MalformedMessage(f"code must be a number or a string of at most {MAX_CODE_LENGTH} characters")


def reply(message: dict[str, Any]) -> ProgressReported | Noted:
    """A device's answer to `otaUpgrade`: progress, an acknowledgement, or a failure (module docstring)."""
    method = optional_text(message, "method", MAX_METHOD_LENGTH)
    if method is not None and method != UPGRADE_METHOD:
        return Noted(f"reply to {method}")  # Skylift sends no other command
    optional_message_id(message)
    nested = next((message[key] for key in ("result", "params") if isinstance(message.get(key), dict)), None)
    body: dict[str, Any] = nested if nested is not None else message
    module = optional_text(body, "module", MAX_MODULE_LENGTH) or optional_text(message, "module", MAX_MODULE_LENGTH)
    desc = body.get("desc", body.get("message", body.get("msg", "")))
    if not isinstance(desc, str):
        raise MalformedMessage("desc must be a string")
    if "step" in body:
        return ProgressReported(step=parse_step(body["step"]), desc=desc[:MAX_DESC_LENGTH], module=module)
    for holder in (body, message):
        for key in ("code", "success"):
            if key in holder:
                code = _code(holder[key])
                if code in SUCCESS_CODES:
                    return Noted("command acknowledged")
                reason = desc or f"{key} {json.dumps(holder[key], ensure_ascii=False)}"
                return ProgressReported(step=-1, desc=reason[:MAX_DESC_LENGTH], module=module)
    raise MalformedMessage("a reply to otaUpgrade carries step, code or success")


def _sub_device(payload: bytes, key: str, inner: Callable[[dict[str, Any]], EztEvent]) -> SubDeviceMessage:
    message = load_object(payload, floats_as_text=True)
    address = required_text(message, "device", MAX_ADDRESS_LENGTH)
    return SubDeviceMessage(address, inner(_object(message, key)))


def parse_attributes(payload: bytes) -> PropertiesReported:
    """`{"version": "1.0.0"}` or `{"mcu_version": "2.1"}` (any other properties alongside)."""
    return properties(load_object(payload, floats_as_text=True))


def parse_event(payload: bytes) -> UpgradeRequested | Noted:
    return event(load_object(payload))


def parse_reply(payload: bytes) -> ProgressReported | Noted:
    return reply(load_object(payload))


def parse_gateway_attributes(payload: bytes) -> SubDeviceMessage:
    """`{"device": "DEVICE1", "values": {"version": "1.0.0"}}`."""
    return _sub_device(payload, "values", properties)


def parse_gateway_event(payload: bytes) -> SubDeviceMessage:
    """`{"device": "DEVICE1", "event": {"method": "otaCheck", "params": {}, "id": 1000}}`."""
    return _sub_device(payload, "event", event)


def parse_gateway_reply(payload: bytes) -> SubDeviceMessage:
    """`{"device": "DEVICE1", "command": {...a reply...}}`: the envelope the command came in (or `reply`)."""
    message = load_object(payload)
    address = required_text(message, "device", MAX_ADDRESS_LENGTH)
    key = "reply" if "reply" in message and "command" not in message else "command"
    return SubDeviceMessage(address, reply(_object(message, key)))


PARSERS: dict[str, Callable[[bytes], EztMessage]] = {
    "attributes": parse_attributes,
    "event_report": parse_event,
    "command_reply": parse_reply,
    "gateway_attributes": parse_gateway_attributes,
    "gateway_event_report": parse_gateway_event,
    "gateway_command_reply": parse_gateway_reply,
}


def module_label(module: str, asked: str | None = None) -> str:
    """The module's name in a command: 003 calls the whole-device module `main`, unless the device said `default`."""
    if module != DEFAULT_MODULE:
        return module
    return DEFAULT_MODULE if asked == DEFAULT_MODULE else MAIN_MODULE


def command(notice: Notice | None, module: str, message_id: MessageId) -> dict[str, Any]:
    """003's `otaUpgrade` command: `upgrade: false` with only the module when nothing newer applies."""
    params: dict[str, Any] = {"module": module, "upgrade": notice is not None}
    if notice is not None:
        first = notice.files[0]
        params["version"] = notice.version
        if notice.stream_id is None:
            params["url"] = first.url
        params["size"] = first.size
        params["md5"] = first.md5
        # Beyond 003: what a device needs when a package has several files or comes over MQTT blocks.
        if len(notice.files) > 1:
            params["files"] = [
                {"fileName": f.name, "fileSize": f.size, "fileUrl": f.url, "fileMd5": f.md5} for f in notice.files
            ]
        if notice.stream_id is not None:
            params.update({"dProtocol": "mqtt", "streamId": notice.stream_id, "streamFileId": first.stream_file_id})
        if notice.is_diff:
            params["isDiff"] = 1  # Alibaba's field
        # extData last: Link SDK 4 takes the first matching key anywhere in the payload.
        if notice.ext_data:
            params["extData"] = notice.ext_data
    return {"method": UPGRADE_METHOD, "params": params, "command_name": COMMAND_NAME, "id": message_id}


def render(body: dict[str, Any], address: str | None = None) -> bytes:
    """A command as sent: as is on `command_send`, or for the sub-device at `address` on
    `gateway_command_send` as `{"device": address, "command": ...}`."""
    message = body if address is None else {"device": address, "command": body}
    return dump_payload(message)


def render_command(notice: Notice | None, module: str, message_id: MessageId) -> bytes:
    return render(command(notice, module, message_id))


def render_gateway_command(address: str, notice: Notice | None, module: str, message_id: MessageId) -> bytes:
    """The command for a sub-device, as its gateway receives it on `gateway_command_send/{username}`."""
    return render(command(notice, module, message_id), address)
