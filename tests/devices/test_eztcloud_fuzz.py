"""Random, truncated and mutated payloads against the EZtCloud parsers: a parse gives one of its
messages or raises MalformedMessage, nothing else; and a refused message never reaches the
database nor gets an answer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_kit
from fuzz_kit import UntouchableDatabase, json_values
from skylift.devices.dialects import eztcloud
from skylift.devices.dialects.base import MalformedMessage, ProgressReported, UpgradeRequested
from skylift.devices.dialects.eztcloud import EztMessage, Noted, PropertiesReported, SubDeviceMessage
from skylift.devices.hub import DeviceHub
from skylift.devices.identity import DeviceIdentity, LoginStyle

EVENTS: dict[str, tuple[type, ...]] = {
    "attributes": (PropertiesReported,),
    "event_report": (UpgradeRequested, Noted),
    "command_reply": (ProgressReported, Noted),
    "gateway_attributes": (SubDeviceMessage,),
    "gateway_event_report": (SubDeviceMessage,),
    "gateway_command_reply": (SubDeviceMessage,),
}
INNER = {
    "gateway_attributes": (PropertiesReported,),
    "gateway_event_report": (UpgradeRequested, Noted),
    "gateway_command_reply": (ProgressReported, Noted),
}
VALID: dict[str, Any] = {
    "attributes": {"version": "1.0.0", "mcu_version": 2.1, "rssi": -60},
    "event_report": {"method": "otaCheck", "params": {"module": "main"}, "id": 1000},
    "command_reply": {"method": "otaUpgrade", "id": 98310, "result": {"step": "50", "desc": "downloading"}},
    "gateway_attributes": {"device": "DEVICE1", "values": {"version": "1.0.0"}},
    "gateway_event_report": {"device": "DEVICE1", "event": {"method": "otaCheck", "params": {}, "id": 1000}},
    "gateway_command_reply": {"device": "DEVICE1", "command": {"id": 1, "result": {"code": 1, "message": "x"}}},
}

field_values = (
    json_values(allow_nan=True)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from(["", "1", "-1", "100", "101", "otaCheck", "otaUpgrade", "0", "200", "٣", "x" * 200])
)
NEW_KEYS = ("step", "code", "success", "method", "module", "result", "params")


def payloads(kind: str) -> st.SearchStrategy[bytes]:
    return fuzz_kit.payloads(VALID[kind], field_values, allow_nan=True, new_keys=NEW_KEYS)


def check(kind: str, payload: bytes) -> EztMessage | None:
    try:
        message = eztcloud.PARSERS[kind](payload)
    except MalformedMessage:
        return None
    assert isinstance(message, EVENTS[kind])
    if isinstance(message, SubDeviceMessage):
        assert isinstance(message.event, INNER[kind])
        assert 0 < len(message.address) <= eztcloud.MAX_ADDRESS_LENGTH
    return message


@pytest.mark.parametrize("kind", sorted(eztcloud.PARSERS))
def test_the_valid_examples_parse(kind: str) -> None:
    assert check(kind, json.dumps(VALID[kind]).encode()) is not None


@pytest.mark.parametrize("kind", sorted(eztcloud.PARSERS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_parse_gives_its_message_or_malformed_message(kind: str, data: st.DataObject) -> None:
    check(kind, data.draw(payloads(kind)))


ME = DeviceIdentity(1, 1, "a1pk", "dev", "tok", LoginStyle.TOKEN)


@pytest.mark.parametrize("kind", sorted(eztcloud.PARSERS))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_refused_message_changes_nothing(kind: str, data: st.DataObject) -> None:
    payload = data.draw(payloads(kind))
    if check(kind, payload) is not None:
        return
    hub = DeviceHub(UntouchableDatabase(), notifier=None, max_payload_bytes=65_536)  # type: ignore[arg-type]

    async def published(topic: str, body: bytes) -> None:
        raise AssertionError(f"a refused message was answered on {topic}")

    hub._publisher = published
    asyncio.run(hub.handle(ME, f"{kind}/tok", payload))


def test_a_payload_over_the_limit_is_refused_unread() -> None:
    hub = DeviceHub(UntouchableDatabase(), notifier=None, max_payload_bytes=16)  # type: ignore[arg-type]
    asyncio.run(hub.handle(ME, "attributes/tok", json.dumps({"version": "1.0.0", "pad": "x" * 40}).encode()))


def test_another_username_is_not_handled() -> None:
    hub = DeviceHub(UntouchableDatabase(), notifier=None, max_payload_bytes=65_536)  # type: ignore[arg-type]
    asyncio.run(hub.handle(ME, "attributes/someone-else", b'{"version": "1.0.0"}'))
