"""The server's own messages go out at once and are tracked in amqtt's bookkeeping until their PUBACK."""

from __future__ import annotations

import asyncio

import pytest
from amqtt.adapters import WriterAdapter
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.plugins.manager import PluginManager
from amqtt.session import Session

from skylift.broker import delivery


class Wire(WriterAdapter):  # type: ignore[misc]
    """The bytes a connection was given."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.is_closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def get_peer_info(self) -> tuple[str, int]:
        return "127.0.0.1", 50000

    def get_ssl_info(self) -> None:
        return None

    async def close(self) -> None:
        self.is_closed = True


def connected() -> tuple[BrokerProtocolHandler, Session, Wire]:
    handler = BrokerProtocolHandler(PluginManager("skylift.tests.no_plugins", context=None))
    session = Session()
    session.client_id = "device-1"
    wire = Wire()
    handler.attach(session, None, wire)
    return handler, session, wire


def _parse(data: bytes) -> list[tuple[str, int, int, bytes]]:
    """(topic, QoS, packet id, payload) of each PUBLISH on the wire."""
    out = []
    offset = 0
    while offset < len(data):
        length = data[offset + 1]
        body = data[offset + 2 : offset + 2 + length]
        topic_length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_length].decode()
        packet_id = int.from_bytes(body[2 + topic_length : 4 + topic_length], "big")
        out.append((topic, (data[offset] >> 1) & 3, packet_id, bytes(body[4 + topic_length :])))
        offset += 2 + length
    return out


class TestSendAtLeastOnce:
    def test_the_publish_is_written_at_once_with_qos_1_and_its_own_packet_id(self) -> None:
        async def scenario() -> None:
            handler, session, wire = connected()
            assert delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"first")
            assert delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"second")
            assert _parse(bytes(wire.data)) == [
                ("/ota/device/upgrade/t", 1, 1, b"first"),
                ("/ota/device/upgrade/t", 1, 2, b"second"),
            ]
            assert sorted(session.inflight_out) == [1, 2]

        asyncio.run(scenario())

    def test_its_puback_ends_the_tracking(self) -> None:
        async def scenario() -> None:
            handler, session, _wire = connected()
            delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"notice")
            await handler.handle_puback(PubackPacket.build(1))
            await asyncio.sleep(0)  # the waiter's callback
            assert session.inflight_out == {}
            assert handler._puback_waiters == {}

        asyncio.run(scenario())

    def test_a_device_that_never_answers_is_given_up_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        async def scenario() -> None:
            monkeypatch.setattr(delivery, "PUBACK_TIMEOUT_SECONDS", 0.05)
            handler, session, _wire = connected()
            delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"notice")
            await asyncio.sleep(0.2)
            assert session.inflight_out == {}
            assert handler._puback_waiters == {}
            # A PUBACK that comes after all is only logged by amqtt.
            await handler.handle_puback(PubackPacket.build(1))

        asyncio.run(scenario())

    def test_a_closing_connection_ends_the_tracking(self) -> None:
        async def scenario() -> None:
            handler, session, _wire = connected()
            delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"notice")
            handler._stop_waiters()  # what amqtt does when the connection ends
            await asyncio.sleep(0)
            assert session.inflight_out == {}
            assert handler._puback_waiters == {}

        asyncio.run(scenario())

    def test_a_closed_connection_takes_nothing(self) -> None:
        async def scenario() -> None:
            handler, session, wire = connected()
            wire.is_closed = True
            assert not delivery.send_at_least_once(handler, session, "/ota/device/upgrade/t", b"notice")
            assert wire.data == bytearray()
            assert session.inflight_out == {}

        asyncio.run(scenario())
