"""The connection gate: caps in total, per address and while waiting for CONNECT; the packet-size cap."""

from __future__ import annotations

import asyncio

import pytest
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.mqtt.publish import PublishPacket
from test_intake import BytesReader

from skylift.broker.intake import GatedReader
from skylift.broker.limits import DESCRIPTOR_RESERVE, ConnectionGate, ConnectionLimits, PacketTooLarge


def gate(**limits: int) -> ConnectionGate:
    return ConnectionGate(ConnectionLimits(**limits))  # type: ignore[arg-type]


def test_the_total_cap_refuses_new_sockets() -> None:
    connections = gate(max_connections=2)
    assert connections.admit("a", lambda: None) is not None
    assert connections.admit("b", lambda: None) is not None
    assert connections.admit("c", lambda: None) is None
    assert connections.open == 2


def test_one_address_is_capped_and_others_are_not() -> None:
    connections = gate(max_per_address=2)
    first = connections.admit("a", lambda: None)
    assert first is not None
    assert connections.admit("a", lambda: None) is not None
    assert connections.admit("a", lambda: None) is None
    assert connections.admit("b", lambda: None) is not None
    connections.release(first, "a")
    assert connections.admit("a", lambda: None) is not None


def test_a_new_socket_displaces_the_oldest_one_still_waiting_for_connect() -> None:
    connections = gate(max_pending=2)
    closed: list[int] = []
    first = connections.admit("a", lambda: closed.append(1))
    second = connections.admit("a", lambda: closed.append(2))
    assert first is not None
    assert second is not None
    connections.logged_in(first)  # logged in: no longer displaceable
    third = connections.admit("a", lambda: closed.append(3))
    fourth = connections.admit("a", lambda: closed.append(4))
    assert third is not None
    assert fourth is not None
    assert closed == [2]  # the oldest waiting one; the logged-in one stays
    assert connections.pending() == 2
    connections.release(second, "a")  # its connection ends after being displaced
    assert connections.open == 3


def test_the_total_never_exceeds_the_descriptors() -> None:
    limits = ConnectionLimits(max_connections=100_000, max_per_address=1_000, max_pending=512)
    capped = limits.within_descriptors(1024)
    assert capped.max_connections == 1024 - DESCRIPTOR_RESERVE
    assert capped.max_pending == 512
    assert limits.within_descriptors(1_000_000) is limits


def publish_of(size: int) -> bytes:
    return bytes(PublishPacket.build("/ota/device/progress/t", b"x" * size, 1, False, 1, False).to_bytes())


async def read_packet(stream: bytes, cap: int) -> int:
    inner = BytesReader(stream)
    reader = GatedReader(inner, None, cap)
    header = await MQTTFixedHeader.from_stream(reader)
    assert header is not None
    await PublishPacket.from_stream(reader, fixed_header=header)
    return inner.offset


def test_a_packet_within_the_cap_is_read() -> None:
    stream = publish_of(1000)
    assert asyncio.run(read_packet(stream, 2000)) == len(stream)


def test_a_packet_over_the_cap_is_refused_before_its_body_is_read() -> None:
    stream = publish_of(100_000)
    inner = BytesReader(stream)

    async def attempt() -> None:
        reader = GatedReader(inner, None, 10_000)
        await MQTTFixedHeader.from_stream(reader)

    with pytest.raises(PacketTooLarge):
        asyncio.run(attempt())
    assert inner.offset <= 5  # the type byte and the remaining length, nothing more
