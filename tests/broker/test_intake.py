"""The gated reader waits for room between MQTT packets only, never inside one."""

from __future__ import annotations

import asyncio

from amqtt.adapters import ReaderAdapter
from amqtt.errors import NoDataError
from amqtt.mqtt import packet_class
from amqtt.mqtt.packet import MQTTFixedHeader
from amqtt.mqtt.pingreq import PingReqPacket
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket

from skylift.broker.intake import GatedReader


class BytesReader(ReaderAdapter):  # type: ignore[misc]
    """A connection's bytes, read as amqtt reads a stream (exactly n bytes, or nothing at the end)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    async def read(self, n: int = -1) -> bytes:
        chunk = self.data[self.offset : self.offset + n] if n >= 0 else self.data[self.offset :]
        self.offset += len(chunk)
        return chunk

    def feed_eof(self) -> None:
        self.offset = len(self.data)


def packets() -> list[bytes]:
    return [
        bytes(PublishPacket.build("/ota/device/progress/t", b"x" * 300, 1, False, 1, False).to_bytes()),
        bytes(PingReqPacket().to_bytes()),  # no remaining length at all
        bytes(PublishPacket.build("/ota/device/inform/t", b"{}", None, False, 0, False).to_bytes()),
        bytes(PublishPacket.build("/ota/device/progress/t", b"y" * 20_000, 2, False, 1, False).to_bytes()),
        bytes(PubackPacket.build(7).to_bytes()),
    ]


async def read_all(stream: bytes) -> tuple[list[int], list[int]]:
    """Parse every packet with amqtt over a gated reader; where room was asked for, and the packet types."""
    inner = BytesReader(stream)
    asked_at: list[int] = []

    async def room() -> None:
        asked_at.append(inner.offset)
        await asyncio.sleep(0)

    reader = GatedReader(inner, room)
    types = []
    while True:
        try:
            header = await MQTTFixedHeader.from_stream(reader)
        except NoDataError:
            break
        if header is None:
            break
        packet = await packet_class(header).from_stream(reader, fixed_header=header)
        types.append(packet.fixed_header.packet_type)
    return asked_at, types


def test_room_is_asked_for_at_each_packet_boundary_only() -> None:
    parts = packets()
    boundaries = [sum(len(part) for part in parts[:index]) for index in range(len(parts) + 1)]
    asked_at, types = asyncio.run(read_all(b"".join(parts)))
    assert len(types) == len(parts)
    assert asked_at == boundaries  # before each packet, and before the read that finds the end
