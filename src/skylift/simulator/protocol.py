"""What a simulated device says and hears, in each device family's own words (pure; no I/O).

Three families: token devices (ThingsPanel, seed 002: `/ota/device/{kind}/{token}`), product-key devices
(Alibaba / SagooIOT, seed 004: `/ota/device/{kind}/{pk}/{dn}`) and EZtCloud devices (seed 003:
`attributes/{username}`, `command_send/{username}`, ...). Every payload here is the seeds' own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

DEFAULT_MODULE = "default"
# The whole-device module under its other names: Skylift's alias, EZtCloud's name.
DEFAULT_ALIASES = frozenset({DEFAULT_MODULE, "main", ""})
MAX_DESC_LENGTH = 128


class Dialect(StrEnum):
    TOKEN = "token"
    PRODUCT_KEY = "product-key"
    EZTCLOUD = "eztcloud"


class NoticeError(ValueError):
    """A message on a downlink topic that is not an upgrade notice this device can follow."""


@dataclass(frozen=True)
class Credentials:
    """What a device is given when it is registered (the answer of `POST /devices`)."""

    name: str
    product_key: str
    access_token: str = ""
    device_secret: str = ""
    device_id: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Credentials:
        device_id = body.get("id", body.get("device_id"))
        return cls(
            name=str(body["name"]),
            product_key=str(body["product_key"]),
            access_token=str(body.get("access_token") or ""),
            device_secret=str(body.get("device_secret") or ""),
            device_id=int(device_id) if device_id is not None else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.device_id,
            "name": self.name,
            "product_key": self.product_key,
            "access_token": self.access_token,
            "device_secret": self.device_secret,
        }


@dataclass(frozen=True)
class Login:
    """The MQTT login of a device and the `{id}` of its `/ota/device/...` topics."""

    username: str
    password: str | None
    topic_id: str


def login_for(dialect: Dialect, credentials: Credentials) -> Login:
    """Token devices log in with their access token; product-key devices with `{dn}&{pk}` and their secret.

    EZtCloud devices log in either way (003's topics then carry that username): by token when they have one."""
    token_login = dialect is Dialect.TOKEN or (dialect is Dialect.EZTCLOUD and credentials.access_token)
    if token_login:
        if not credentials.access_token:
            raise ValueError(f"device {credentials.name} has no access token")
        return Login(credentials.access_token, None, credentials.access_token)
    if not credentials.device_secret:
        raise ValueError(f"device {credentials.name} has no device secret")
    username = f"{credentials.name}&{credentials.product_key}"
    return Login(username, credentials.device_secret, f"{credentials.product_key}/{credentials.name}")


@dataclass(frozen=True)
class Topics:
    dialect: Dialect
    login: Login

    def ota(self, kind: str) -> str:
        return f"/ota/device/{kind}/{self.login.topic_id}"

    def eztcloud(self, kind: str) -> str:
        return f"{kind}/{self.login.username}"

    @property
    def report(self) -> str:
        """Where the device reports its version."""
        return self.eztcloud("attributes") if self.dialect is Dialect.EZTCLOUD else self.ota("inform")

    @property
    def progress(self) -> str:
        return self.eztcloud("command_reply") if self.dialect is Dialect.EZTCLOUD else self.ota("progress")

    @property
    def ask(self) -> str:
        """Where the device asks for its upgrade (seed 004's request, 003's otaCheck)."""
        return self.eztcloud("event_report") if self.dialect is Dialect.EZTCLOUD else self.ota("request")

    @property
    def notices(self) -> str:
        return self.eztcloud("command_send") if self.dialect is Dialect.EZTCLOUD else self.ota("upgrade")

    @property
    def block_request(self) -> str:
        return self.ota("download")

    @property
    def block_reply(self) -> str:
        return self.ota("download_reply")

    def subscriptions(self) -> tuple[str, ...]:
        """The downlink topics a device subscribes to at every boot: notices, and blocks over MQTT."""
        return (self.notices, self.block_reply)


def canonical_module(module: str | None) -> str:
    return DEFAULT_MODULE if module is None or module.strip().lower() in DEFAULT_ALIASES else module.strip()


def version_property(module: str) -> str:
    """The property an EZtCloud device reports a module's version in (Skylift's default naming)."""
    module = canonical_module(module)
    return "version" if module == DEFAULT_MODULE else f"{module.lower()}_version"


def dump(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def version_report(
    dialect: Dialect, version: str, module: str, message_id: int, property_name: str | None = None
) -> bytes:
    """`{"id": "1", "params": {"version": "1.0.0", "module": "MCU"}}`, or 003's `{"version": "1.0.0"}`."""
    if dialect is Dialect.EZTCLOUD:
        return dump({property_name or version_property(module): version})
    params: dict[str, Any] = {"version": version}
    if canonical_module(module) != DEFAULT_MODULE:
        params["module"] = module
    return dump({"id": str(message_id), "params": params})


def progress_report(
    dialect: Dialect, step: int, desc: str, module: str, message_id: int, command_id: object = None
) -> bytes:
    """Progress in the family's form: 002's flat object, 004's `params`, or 003's reply to `otaUpgrade`."""
    desc = desc[:MAX_DESC_LENGTH]
    named = canonical_module(module) != DEFAULT_MODULE
    if dialect is Dialect.TOKEN:
        flat: dict[str, Any] = {"step": str(step), "desc": desc}
        if named:
            flat["module"] = module
        return dump(flat)
    if dialect is Dialect.PRODUCT_KEY:
        params: dict[str, Any] = {"step": str(step), "desc": desc}
        if named:
            params["module"] = module
        return dump({"id": message_id, "params": params})
    result: dict[str, Any] = {"step": step, "desc": desc}
    if named:
        result["module"] = module
    return dump({"method": "otaUpgrade", "id": command_id if command_id is not None else message_id, "result": result})


def upgrade_request(dialect: Dialect, version: str, module: str, message_id: int) -> bytes:
    """Asking for an upgrade: 004's request on `/ota/device/request/{id}`, or 003's `otaCheck` event."""
    named = canonical_module(module) != DEFAULT_MODULE
    if dialect is Dialect.EZTCLOUD:
        return dump({"method": "otaCheck", "params": {"module": module} if named else {}, "id": message_id})
    params: dict[str, Any] = {"version": version}
    if named:
        params["module"] = module
    return dump({"id": message_id, "params": params})


@dataclass(frozen=True)
class FileOrder:
    """One file of an upgrade: where to fetch it (a URL, or a stream over MQTT) and its digest."""

    name: str
    size: int
    url: str | None
    stream_file_id: int | None
    digest: str  # hex, lower case
    algorithm: str  # "md5" or "sha256"


@dataclass(frozen=True)
class UpgradeOrder:
    """An upgrade notice, whatever its envelope."""

    version: str
    module: str
    files: tuple[FileOrder, ...]
    stream_id: int | None = None  # set when the files come over MQTT in blocks
    command_id: object = None  # an EZtCloud command's id, echoed in the replies


def parse_notice(payload: bytes) -> UpgradeOrder | None:
    """An upgrade notice in any family's envelope; None for "nothing pending" (empty params, `upgrade: false`)."""
    try:
        message = json.loads(payload)
    except ValueError as exc:
        raise NoticeError(f"not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise NoticeError("not a JSON object")
    body = message.get("params") if isinstance(message.get("params"), dict) else message.get("data")
    if not isinstance(body, dict):
        raise NoticeError("neither params nor data is an object")
    if not body or body.get("upgrade") is False:
        return None
    version = body.get("version")
    if not isinstance(version, str | int | float) or isinstance(version, bool) or not str(version).strip():
        raise NoticeError("the notice names no version")
    stream = body.get("dProtocol") == "mqtt"
    stream_id = _whole(body.get("streamId"), "streamId") if stream else None
    listed = body.get("files")
    if isinstance(listed, list) and listed:
        files = tuple(_file(entry, body, stream, listed=True) for entry in listed)
    else:
        files = (_file(body, body, stream, listed=False),)
    module = body.get("module")
    return UpgradeOrder(
        version=str(version).strip(),
        module=canonical_module(module if isinstance(module, str) else None),
        files=files,
        stream_id=stream_id,
        command_id=message.get("id") if "method" in message else None,
    )


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise NoticeError(f"{name} is not a whole number")
    try:
        return int(value)
    except ValueError:
        raise NoticeError(f"{name} is not a whole number") from None


def _file(entry: object, body: dict[str, Any], stream: bool, listed: bool) -> FileOrder:
    if not isinstance(entry, dict):
        raise NoticeError("a file of the notice is not an object")
    size_key, url_key = ("fileSize", "fileUrl") if listed else ("size", "url")
    size = _whole(entry.get(size_key), size_key)
    url = entry.get(url_key)
    stream_file_id = _whole(entry.get("streamFileId"), "streamFileId") if stream else None
    if not stream and not isinstance(url, str):
        raise NoticeError("the notice has neither a URL nor dProtocol mqtt")
    algorithm, digest = _digest(entry, body, listed)
    name = entry.get("fileName") if listed else None
    return FileOrder(
        name=str(name or "firmware"),
        size=size,
        url=url if isinstance(url, str) and not stream else None,
        stream_file_id=stream_file_id,
        digest=digest.lower(),
        algorithm=algorithm,
    )


def _digest(entry: dict[str, Any], body: dict[str, Any], listed: bool) -> tuple[str, str]:
    """`sign` with its `signMethod` (Md5, MD5, SHA256) where given; otherwise the `md5` (003 sends only that)."""
    sign = entry.get("fileSign" if listed else "sign")
    method = str(body.get("signMethod") or "").lower()
    if isinstance(sign, str) and sign and method in ("md5", "sha256"):
        return method, sign
    md5 = entry.get("fileMd5" if listed else "md5")
    if isinstance(md5, str) and md5:
        return "md5", md5
    raise NoticeError("the notice carries no digest to verify the file with")
