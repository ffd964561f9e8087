"""Settings of an external broker: where it is, and the password Skylift and its plugin share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from skylift.config import Settings

PASSWORD = "a-password-of-24-chars!!"


def test_the_embedded_broker_by_default() -> None:
    assert Settings().external_broker is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://broker.local:1884", ("broker.local", 1884, False)),
        ("mqtt://10.0.0.7", ("10.0.0.7", 1883, False)),
        ("mqtts://broker.local/", ("broker.local", 8883, True)),
    ],
)
def test_host_port_and_tls_come_from_the_url(url: str, expected: tuple[str, int, bool]) -> None:
    assert Settings(mqtt_broker_url=url, mqtt_broker_password=PASSWORD).external_broker == expected


@pytest.mark.parametrize("url", ["http://broker:1883", "mqtt://user:pw@broker:1883", "mqtt://broker:port", "broker"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="mqtt_broker_url"):
        Settings(mqtt_broker_url=url, mqtt_broker_password=PASSWORD)


def test_an_external_broker_needs_the_password() -> None:
    with pytest.raises(ValidationError, match="SKYLIFT_MQTT_BROKER_PASSWORD"):
        Settings(mqtt_broker_url="mqtt://broker:1883")
    with pytest.raises(ValidationError, match="at least 16"):
        Settings(mqtt_broker_url="mqtt://broker:1883", mqtt_broker_password="short")
