"""The internal events every dialect translates device messages into, and the notice they render."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_MODULE_LENGTH = 64
MAX_VERSION_LENGTH = 64


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


DeviceEvent = VersionReported | ProgressReported


@dataclass(frozen=True)
class NoticeFile:
    name: str
    size: int
    url: str
    md5: str
    sha256: str


@dataclass(frozen=True)
class Notice:
    """An upgrade notice, before it is put into a dialect's envelope."""

    message_id: int
    module: str
    version: str
    sign_method: str  # "MD5" or "SHA256"
    files: list[NoticeFile]
    ext_data: dict[str, Any] = field(default_factory=dict)

    def sign_of(self, file: NoticeFile) -> str:
        return file.md5 if self.sign_method == "MD5" else file.sha256


def load_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedMessage("payload is not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedMessage("payload is not a JSON object")
    return value


def optional_text(container: dict[str, Any], key: str, max_length: int) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise MalformedMessage(f"{key} must be a string of at most {max_length} characters")
    return value


def required_text(container: dict[str, Any], key: str, max_length: int) -> str:
    value = optional_text(container, key, max_length)
    if value is None:
        raise MalformedMessage(f"{key} is missing")
    return value
