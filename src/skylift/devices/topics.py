"""The seeds' MQTT topic families, and which of them a device may use (pure; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass

from skylift.devices.identity import DeviceIdentity, LoginStyle

OTA_PREFIX = "/ota/device/"
SYS_PREFIX = "/sys/"
UP_KINDS = frozenset({"inform", "progress", "request", "download"})
DOWN_KINDS = frozenset({"upgrade", "download_reply"})
# Alibaba SDK methods under `/sys/{pk}/{dn}/` → message kind; each is answered on `{method}_reply`.
SYS_METHODS = {"thing/ota/firmware/get": "firmware_get", "thing/file/download": "download"}
# EZtCloud (003): `{kind}/{username}`, where username is what the device logged in with.
EZTCLOUD_UP_KINDS = frozenset(
    {
        "attributes",
        "event_report",
        "command_reply",
        "gateway_attributes",
        "gateway_event_report",
        "gateway_command_reply",
    }
)
COMMAND_SEND = "command_send"
GATEWAY_COMMAND_SEND = "gateway_command_send"
EZTCLOUD_DOWN_KINDS = frozenset({COMMAND_SEND, GATEWAY_COMMAND_SEND})


@dataclass(frozen=True)
class Route:
    """Where a device message came in: its topic family, message kind and the `{id}` in the topic."""

    family: str  # "ota" (/ota/device/...), "sys" (/sys/{pk}/{dn}/...) or "eztcloud" ({kind}/{username})
    kind: str
    topic_id: str  # for "eztcloud", the username
    method: str = ""  # the /sys method, for its reply topic

    @property
    def reply_topic(self) -> str:
        """Where the answer to a request or block request goes."""
        if self.family == "sys":
            return f"{SYS_PREFIX}{self.topic_id}/{self.method}_reply"
        if self.family == "eztcloud":
            if self.kind.startswith("gateway_"):
                return gateway_command_topic(self.topic_id)
            return command_topic(self.topic_id)
        if self.kind == "download":
            return f"{OTA_PREFIX}download_reply/{self.topic_id}"
        return upgrade_topic(self.topic_id)


def route(topic: str) -> Route | None:
    """The route of a device → Skylift topic, or None for a topic Skylift does not handle."""
    parts = split_ota_topic(topic)
    if parts is not None:
        return Route("ota", parts[0], parts[1])
    parts = split_eztcloud_topic(topic)
    if parts is not None:
        return Route("eztcloud", parts[0], parts[1]) if parts[0] in EZTCLOUD_UP_KINDS else None
    if not topic.startswith(SYS_PREFIX):
        return None
    product_key, _, rest = topic[len(SYS_PREFIX) :].partition("/")
    device_name, _, method = rest.partition("/")
    kind = SYS_METHODS.get(method)
    if not product_key or not device_name or kind is None:
        return None
    return Route("sys", kind, f"{product_key}/{device_name}", method)


def split_ota_topic(topic: str) -> tuple[str, str] | None:
    """`/ota/device/{kind}/{id}` → (kind, id), where id is a token or `{pk}/{dn}`."""
    if not topic.startswith(OTA_PREFIX):
        return None
    kind, _, topic_id = topic[len(OTA_PREFIX) :].partition("/")
    if not kind or not topic_id:
        return None
    return kind, topic_id


def split_eztcloud_topic(topic: str) -> tuple[str, str] | None:
    """`{kind}/{username}` → (kind, username) for EZtCloud's topic kinds; None for anything else."""
    kind, _, username = topic.partition("/")
    if kind not in EZTCLOUD_UP_KINDS and kind not in EZTCLOUD_DOWN_KINDS:
        return None
    if not username or "/" in username:
        return None
    return kind, username


def command_topic(username: str) -> str:
    return f"{COMMAND_SEND}/{username}"


def gateway_command_topic(username: str) -> str:
    return f"{GATEWAY_COMMAND_SEND}/{username}"


def topic_id_for(identity: DeviceIdentity) -> str:
    return identity.access_token if identity.login_style is LoginStyle.TOKEN else identity.key_path


def upgrade_topic(topic_id: str) -> str:
    return f"{OTA_PREFIX}upgrade/{topic_id}"


def _sys_prefix(identity: DeviceIdentity) -> str:
    return f"/sys/{identity.key_path}/"


def _has_wildcard(text: str) -> bool:
    return "+" in text or "#" in text


def may_publish(identity: DeviceIdentity, topic: str) -> bool:
    if _has_wildcard(topic):
        return False
    parts = split_ota_topic(topic)
    if parts is not None:
        kind, topic_id = parts
        return kind in UP_KINDS and identity.owns_topic_id(topic_id)
    parts = split_eztcloud_topic(topic)
    if parts is not None:
        kind, username = parts
        return kind in EZTCLOUD_UP_KINDS and username == identity.username
    sys_prefix = _sys_prefix(identity)
    # Replies flow down from the platform; a device may not forge them for itself.
    return topic.startswith(sys_prefix) and not topic.endswith("_reply")


def may_subscribe(identity: DeviceIdentity, topic_filter: str) -> bool:
    parts = split_ota_topic(topic_filter)
    if parts is not None:
        kind, topic_id = parts
        return kind in DOWN_KINDS and not _has_wildcard(topic_id) and identity.owns_topic_id(topic_id)
    parts = split_eztcloud_topic(topic_filter)
    if parts is not None:
        kind, username = parts
        # Only its own username, and never a wildcard that could match someone else's.
        return kind in EZTCLOUD_DOWN_KINDS and not _has_wildcard(topic_filter) and username == identity.username
    sys_prefix = _sys_prefix(identity)
    return topic_filter.startswith(sys_prefix) and not _has_wildcard(identity.key_path)
