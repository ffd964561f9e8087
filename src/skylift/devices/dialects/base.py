"""The internal events every dialect translates device messages into, and the notice they render."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from skylift.kit.nul import first_nul

MAX_MODULE_LENGTH = 64
MAX_VERSION_LENGTH = 64
MAX_ID_LENGTH = 64
# A device's message id, echoed in answers: seed 002 and Alibaba send strings, seed 004 numbers.
MessageId = int | str
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_CLOSING = re.compile(r"\s*[}\]]")


class MalformedMessage(ValueError):
    """A device payload that cannot be understood; logged and counted, never acted on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VersionReported:
    module: str | None
    version: str


@dataclass(frozen=True)
class ProgressReported:
    step: int
    desc: str
    module: str | None
    # Step 100 completes the upgrade for token (seed 002) and EZtCloud devices; a product-key device
    # (seed 004, Alibaba's and SagooIOT's SDKs) is done only when it reports the target version.
    done_at_100: bool = True


@dataclass(frozen=True)
class UpgradeRequested:
    """The device asks for its upgrade of one module (seed 004's request, Alibaba's firmware/get)."""

    module: str | None
    message_id: MessageId | None


@dataclass(frozen=True)
class BlockRequested:
    """One block of a file sent over MQTT (Alibaba's file/download); range checks are the server's."""

    message_id: MessageId | None
    file_token: str
    stream_id: int
    file_id: int
    offset: int
    size: int


DeviceEvent = VersionReported | ProgressReported | UpgradeRequested | BlockRequested


@dataclass(frozen=True)
class NoticeFile:
    name: str
    size: int
    url: str | None  # None when the file is fetched over MQTT in blocks
    md5: str
    sha256: str
    stream_file_id: int | None = None


@dataclass(frozen=True)
class Notice:
    """An upgrade notice, before it is put into a dialect's envelope."""

    message_id: MessageId
    module: str
    version: str
    sign_method: str  # "MD5" or "SHA256"
    files: list[NoticeFile]
    ext_data: dict[str, Any] = field(default_factory=dict)
    # A binary delta from the device's current version: devices must know before they apply it.
    is_diff: bool = False
    # Set for campaigns whose protocol is mqtt: the device fetches blocks of this stream.
    stream_id: int | None = None

    def sign_of(self, file: NoticeFile) -> str:
        return file.md5 if self.sign_method == "MD5" else file.sha256


def dump_payload(value: Any) -> bytes:
    """JSON for a device, compact and in UTF-8: Link SDK 4's reader finds `"key":value` only."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def load_object(payload: bytes, *, floats_as_text: bool = False, trailing_commas: bool = False) -> dict[str, Any]:
    """The payload's JSON object; `floats_as_text` keeps a number like `2.10` as the text the device sent.

    With `trailing_commas`, a comma right before `}` or `]` is forgiven: Link SDK 4 writes its block
    requests as `"fileInfo":{"streamId":1,"fileId":1,}` and cannot be changed in the field."""
    parse_float = str if floats_as_text else None
    try:
        value = json.loads(payload, parse_float=parse_float)
    # ValueError also covers integers too long to convert; RecursionError, arrays nested too deep.
    except (ValueError, RecursionError) as exc:
        if not trailing_commas:
            raise MalformedMessage("payload is not JSON") from exc
        try:
            value = json.loads(_without_trailing_commas(payload.decode()), parse_float=parse_float)
        except (ValueError, RecursionError):
            raise MalformedMessage("payload is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedMessage("payload is not a JSON object")
    if b"\\u0000" in payload and first_nul(value) is not None:
        raise MalformedMessage("payload holds a NUL character")
    return value


def _without_trailing_commas(text: str) -> str:
    """The text with every comma that stands (outside strings) right before a closing bracket removed."""
    kept: list[str] = []
    in_string = escaped = False
    for index, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "," and _CLOSING.match(text, index + 1):
            continue
        kept.append(char)
    return "".join(kept)


def optional_text(container: dict[str, Any], key: str, max_length: int) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise MalformedMessage(f"{key} must be a string of at most {max_length} characters")
    return value


def optional_message_id(container: dict[str, Any]) -> MessageId | None:
    """The `id` a device put in its message, to echo in the answer."""
    value = container.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedMessage("id must be a number or a string")
    if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
        raise MalformedMessage(f"id must be at most {MAX_ID_LENGTH} characters")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise MalformedMessage("id is out of range")
    return value


def whole_number(container: dict[str, Any], key: str, low: int = -(2**63), high: int = 2**63 - 1) -> int:
    """An integer field, also accepted as a decimal string (the seeds send `"step": "1"`)."""
    value = container.get(key)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedMessage(f"{key} must be a whole number")
    if not low <= value <= high:
        raise MalformedMessage(f"{key} must be between {low} and {high}")
    return value


def required_text(container: dict[str, Any], key: str, max_length: int) -> str:
    value = optional_text(container, key, max_length)
    if value is None:
        raise MalformedMessage(f"{key} is missing")
    return value
