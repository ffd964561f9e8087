"""The seeds' MQTT topic families, and which of them a device may use (pure; no I/O)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from skylift.devices.identity import DeviceIdentity, LoginStyle

OTA_PREFIX = "/ota/device/"
SYS_PREFIX = "/sys/"
UP_KINDS = frozenset({"inform", "progress", "request", "download"})
DOWN_KINDS = frozenset({"upgrade", "download_reply"})
OTA_KINDS = UP_KINDS | DOWN_KINDS
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
EZTCLOUD_KINDS = EZTCLOUD_UP_KINDS | EZTCLOUD_DOWN_KINDS


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


def auto_subscriptions(identity: DeviceIdentity) -> tuple[str, ...]:
    """The downlink topics the platform subscribes an Alibaba SDK device to (`_ss=1`): its notices,
    the `firmware/get` answer and both download replies, all in the `{pk}/{dn}` form."""
    key_path = identity.key_path
    sys_replies = (Route("sys", kind, key_path, method).reply_topic for method, kind in SYS_METHODS.items())
    return (upgrade_topic(key_path), *sys_replies, Route("ota", "download", key_path).reply_topic)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter (`+` one level, `#` the rest, also none) matches a topic."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return index == len(filter_levels) - 1
        if index >= len(topic_levels) or level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


def _matches_below(topic_filter: str, prefix: str) -> bool:
    """Whether the filter matches some topic of the form `{prefix}/{at least one more level}`."""
    filter_levels = topic_filter.split("/")
    prefix_levels = prefix.split("/")
    for index, level in enumerate(prefix_levels):
        if index >= len(filter_levels):
            return False
        if filter_levels[index] == "#":
            return True
        if filter_levels[index] not in ("+", level):
            return False
    return len(filter_levels) > len(prefix_levels)


def _own_topics(identity: DeviceIdentity) -> list[str]:
    """Every fixed topic of the device's own (the `/sys/{pk}/{dn}/...` tree aside)."""
    ota = [f"{OTA_PREFIX}{kind}/{topic_id}" for kind in OTA_KINDS for topic_id in identity.topic_ids]
    return ota + [f"{kind}/{identity.username}" for kind in EZTCLOUD_KINDS]


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


def _is_own_topic(identity: DeviceIdentity, topic: str) -> bool:
    """A topic of the device's own, up or down: under its token or `{pk}/{dn}`, or its login username."""
    if not topic or _has_wildcard(topic):
        return False
    parts = split_ota_topic(topic)
    if parts is not None:
        kind, topic_id = parts
        return kind in OTA_KINDS and identity.owns_topic_id(topic_id)
    parts = split_eztcloud_topic(topic)
    if parts is not None:
        return parts[1] == identity.username
    sys_prefix = _sys_prefix(identity)
    return topic.startswith(sys_prefix) and len(topic) > len(sys_prefix)


def may_read(identity: DeviceIdentity, topic: str) -> bool:
    """Whether a message on `topic` may be delivered to the device: only what the platform sends it on
    its own topics (its upgrade and download-reply topics in both forms, its `/sys/.../*_reply`, its
    EZtCloud commands). Checked for every message, whatever filter it matched."""
    if not _is_own_topic(identity, topic):
        return False
    parts = split_ota_topic(topic)
    if parts is not None:
        return parts[0] in DOWN_KINDS
    parts = split_eztcloud_topic(topic)
    if parts is not None:
        return parts[0] in EZTCLOUD_DOWN_KINDS
    return topic.endswith("_reply")


def may_subscribe(identity: DeviceIdentity, topic_filter: str) -> bool:
    """Any filter that can match one of the device's own topics (uplink ones too: some SDKs subscribe
    to them) is granted, wildcards included; delivery is still checked message by message (`may_read`)."""
    if not _has_wildcard(topic_filter):
        return _is_own_topic(identity, topic_filter)
    if any(topic_matches(topic_filter, topic) for topic in _own_topics(identity)):
        return True
    return _matches_below(topic_filter, _sys_prefix(identity).rstrip("/"))


# Token devices' topics carry their access token, their whole credential: `/ota/device/{kind}/{token}`
# and EZtCloud's `{kind}/{username}`. Product-key topics (`{pk}/{dn}`) name a device, not a secret.
_OTA_TOKEN = re.compile(r"(/ota/device/[a-z_]+/)([^/\s'\",);:]+)(?=$|[\s'\",);:])")
_EZT_USERNAME = re.compile(
    r"(?<![\w/])(" + "|".join(sorted(EZTCLOUD_KINDS, key=len, reverse=True)) + r")/([^/\s'\",);:]+)"
)
REDACTED = "***"


def redact(text: str) -> str:
    """`text` with the credential in every topic it mentions replaced by `***` (for log lines)."""
    text = _OTA_TOKEN.sub(lambda m: m.group(1) + REDACTED, text)
    return _EZT_USERNAME.sub(lambda m: f"{m.group(1)}/{REDACTED}", text)


def broker_rules(identity: DeviceIdentity) -> dict[str, list[str | dict[str, str]]]:
    """The device's topic rules for an external broker's plugin, the same as `may_publish`, `may_read`
    and `may_subscribe`: a rule is a whole topic, or `{"prefix": P}` with `"suffix": S` (the topic ends
    with S) or `"without_suffix": S` (it does not)."""
    sys_prefix = _sys_prefix(identity)
    own = _own_topics(identity)
    return {
        "publish": [
            *(f"{OTA_PREFIX}{kind}/{topic_id}" for kind in sorted(UP_KINDS) for topic_id in identity.topic_ids),
            *(f"{kind}/{identity.username}" for kind in sorted(EZTCLOUD_UP_KINDS)),
            {"prefix": sys_prefix, "without_suffix": "_reply"},
        ],
        "read": [
            *(f"{OTA_PREFIX}{kind}/{topic_id}" for kind in sorted(DOWN_KINDS) for topic_id in identity.topic_ids),
            *(f"{kind}/{identity.username}" for kind in sorted(EZTCLOUD_DOWN_KINDS)),
            {"prefix": sys_prefix, "suffix": "_reply"},
        ],
        "own": [*own, {"prefix": sys_prefix}],
    }
