"""The seeds' MQTT topic families, and which of them a device may use (pure; no I/O)."""

from __future__ import annotations

from skylift.devices.identity import DeviceIdentity, LoginStyle

OTA_PREFIX = "/ota/device/"
UP_KINDS = frozenset({"inform", "progress", "request", "download"})
DOWN_KINDS = frozenset({"upgrade", "download_reply"})


def split_ota_topic(topic: str) -> tuple[str, str] | None:
    """`/ota/device/{kind}/{id}` → (kind, id), where id is a token or `{pk}/{dn}`."""
    if not topic.startswith(OTA_PREFIX):
        return None
    kind, _, topic_id = topic[len(OTA_PREFIX) :].partition("/")
    if not kind or not topic_id:
        return None
    return kind, topic_id


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
    sys_prefix = _sys_prefix(identity)
    # Replies flow down from the platform; a device may not forge them for itself.
    return topic.startswith(sys_prefix) and not topic.endswith("_reply")


def may_subscribe(identity: DeviceIdentity, topic_filter: str) -> bool:
    parts = split_ota_topic(topic_filter)
    if parts is not None:
        kind, topic_id = parts
        return kind in DOWN_KINDS and not _has_wildcard(topic_id) and identity.owns_topic_id(topic_id)
    sys_prefix = _sys_prefix(identity)
    return topic_filter.startswith(sys_prefix) and not _has_wildcard(identity.key_path)
