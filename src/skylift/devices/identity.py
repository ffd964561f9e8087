"""Who a connected device is, and which topic ids are its own."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LoginStyle(StrEnum):
    TOKEN = "token"  # seed 002: username = access token, topics carry the token
    PRODUCT_KEY = "product_key"  # seed 004: username = DeviceName&ProductKey, topics carry pk/dn


def session_key_for(device_id: int) -> str:
    # Broker sessions are keyed by device, not by the free-form client id the device chose.
    return f"skylift-device-{device_id}"


@dataclass(frozen=True)
class DeviceIdentity:
    device_id: int
    product_id: int
    product_key: str
    name: str
    access_token: str
    login_style: LoginStyle
    # Alibaba's SDKs put `_ss=1` in their client id and expect the platform to subscribe them.
    auto_subscribe: bool = False

    @property
    def session_key(self) -> str:
        return session_key_for(self.device_id)

    @property
    def key_path(self) -> str:
        return f"{self.product_key}/{self.name}"

    @property
    def username(self) -> str:
        """The MQTT username the device logged in with; EZtCloud (003) topics carry it."""
        return self.access_token if self.login_style is LoginStyle.TOKEN else f"{self.name}&{self.product_key}"

    @property
    def topic_ids(self) -> tuple[str, str]:
        """The `{id}` of its `/ota/device/...` topics: its access token, or `{pk}/{dn}`."""
        return (self.access_token, self.key_path)

    def owns_topic_id(self, topic_id: str) -> bool:
        return topic_id in self.topic_ids
