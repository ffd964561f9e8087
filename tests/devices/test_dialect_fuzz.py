"""Random and truncated payloads against every dialect parser (MQTT topics and HTTP bodies alike):
a parse gives its event or raises MalformedMessage, nothing else; and a refused message never
reaches the database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_kit
from fuzz_kit import UntouchableDatabase, json_values
from skylift.devices.dialects import alink, ota
from skylift.devices.dialects.base import (
    BlockRequested,
    DeviceEvent,
    MalformedMessage,
    ProgressReported,
    UpgradeRequested,
    VersionReported,
)
from skylift.devices.hub import DeviceHub
from skylift.devices.identity import DeviceIdentity, LoginStyle

PARSERS: dict[str, tuple[Callable[[bytes], DeviceEvent], type]] = {
    "inform": (ota.parse_inform, VersionReported),
    "progress": (ota.parse_progress, ProgressReported),
    "request": (ota.parse_request, UpgradeRequested),
    "download": (ota.parse_block_request, BlockRequested),
    "firmware_get": (alink.parse_firmware_get, UpgradeRequested),
}
# A topic per parser, for the hub-level check.
TOPICS = {
    "inform": "/ota/device/inform/tok",
    "progress": "/ota/device/progress/tok",
    "request": "/ota/device/request/a1pk/dev",
    "download": "/sys/a1pk/dev/thing/file/download",
    "firmware_get": "/sys/a1pk/dev/thing/ota/firmware/get",
}
# Well-formed examples of each, to truncate and to mutate.
VALID = {
    "inform": {"id": "147258369", "params": {"version": "v1.0.1", "module": "default"}},
    "progress": {"id": 1, "params": {"step": "1", "desc": "downloading", "module": "MCU"}},
    "request": {"id": 1, "params": {"version": "1.0.1", "module": "MCU"}},
    "download": {
        "id": "n",
        "version": "1.0",
        "params": {"fileToken": "t", "fileInfo": {"streamId": 1, "fileId": 2}, "fileBlock": {"size": 256, "offset": 0}},
    },
    "firmware_get": {"id": 5, "version": "1.0", "params": {"module": "MCU"}},
}

# Values a field might wrongly hold: the right type or any other.
field_values = json_values() | st.integers(-(2**70), 2**70) | st.sampled_from(["", "1", "-1", "100", "1e3", "٣", "--5"])


def payloads(kind: str) -> st.SearchStrategy[bytes]:
    return fuzz_kit.payloads(VALID[kind], field_values)


def check(kind: str, payload: bytes) -> DeviceEvent | None:
    parser, event_type = PARSERS[kind]
    try:
        event = parser(payload)
    except MalformedMessage:
        return None
    assert isinstance(event, event_type)
    return event


@pytest.mark.parametrize("kind", sorted(PARSERS))
def test_the_valid_examples_parse(kind: str) -> None:
    assert check(kind, json.dumps(VALID[kind]).encode()) is not None


@pytest.mark.parametrize("kind", sorted(PARSERS))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_parse_gives_its_event_or_malformed_message(kind: str, data: st.DataObject) -> None:
    check(kind, data.draw(payloads(kind)))


ME = DeviceIdentity(1, 1, "a1pk", "dev", "tok", LoginStyle.PRODUCT_KEY)


@pytest.mark.parametrize("kind", sorted(PARSERS))
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_refused_message_changes_nothing(kind: str, data: st.DataObject) -> None:
    payload = data.draw(payloads(kind))
    if check(kind, payload) is not None:
        return
    hub = DeviceHub(UntouchableDatabase(), notifier=None, max_payload_bytes=65_536)

    async def published(topic: str, body: bytes) -> None:
        raise AssertionError(f"a refused message was answered on {topic}")

    hub._publisher = published
    asyncio.run(hub.handle(ME, TOPICS[kind], payload))
