"""How a device's PUBLISH enters Skylift: recorded first, acknowledged after, read only while there is room.

amqtt 0.12 answers an incoming QoS 1 PUBLISH as soon as it has read it
(`ProtocolHandler._handle_qos1_message_flow` puts the message on the session's delivery queue and
sends PUBACK straight away), and the broker's client loop hands it to plugins later. Here the
protocol handler takes each PUBLISH itself, in the order it was read: the device hub records it in
the device inbox, and only once that is committed does the PUBACK (QoS 1) or PUBREC (QoS 2) go out.
Device messages are not relayed to other sessions: no device may read another's uplink topics.

A device that sends faster than its messages are applied is not dropped but slowed down: its
connection is read only while it has room in the inbox (`GatedReader`), so TCP pushes back on it,
and its in-flight window stays full while its PUBACKs wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from amqtt.adapters import ReaderAdapter
from amqtt.errors import MQTTError
from amqtt.mqtt.connack import ConnackPacket
from amqtt.mqtt.constants import QOS_0, QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.publish import PublishPacket, PublishVariableHeader
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from amqtt.session import Session

from skylift.broker.lean import slim_handler, slim_started_handler
from skylift.broker.limits import PacketTooLarge
from skylift.broker.plugins import identity_of
from skylift.devices.hub import DeviceHub
from skylift.devices.topics import may_publish
from skylift.kit import metrics

log = logging.getLogger(__name__)


def _refused_by_amqtt(topic: str) -> bool:
    # Topics amqtt's broker closes the connection for ([MQTT-4.7.3-1], [MQTT-3.3.2-2], [MQTT-4.7.2-1]).
    return not topic or "#" in topic or "+" in topic or topic.startswith("$")


class ProtocolViolation(Exception):
    """A packet MQTT forbids: the server closes its connection ([MQTT-4.8.0-1])."""


_publish_header_parser = PublishVariableHeader.from_stream.__func__


async def _publish_header(cls: type[PublishVariableHeader], reader: Any, fixed_header: Any) -> PublishVariableHeader:
    try:
        header: PublishVariableHeader = await _publish_header_parser(cls, reader, fixed_header)
    except MQTTError as exc:
        metrics.REFUSED_CONNECTIONS.labels(reason="wildcard in a PUBLISH topic").inc()
        raise ProtocolViolation(f"a PUBLISH on a topic with a wildcard: {exc}") from exc
    return header


def refuse_wildcard_publishes() -> None:
    """amqtt's PUBLISH parser refuses a topic with `+` or `#` ([MQTT-3.3.2-2]) once it has read the topic
    alone; its reader loop then drops the packet and reads the rest of it (packet id, payload) as the next
    packets. Here the violation ends the connection, as MQTT requires, and is counted."""
    PublishVariableHeader.from_stream = classmethod(_publish_header)


class SubscriptionDesk(Protocol):
    """The broker side of a SUBSCRIBE and an UNSUBSCRIBE: record them, answer them, tell the plugins."""

    async def take_subscription(
        self, session: Session, handler: BrokerProtocolHandler, subscription: Subscription
    ) -> None: ...

    async def take_unsubscription(
        self, session: Session, handler: BrokerProtocolHandler, unsubscription: UnSubscription
    ) -> None: ...


class DeviceProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's broker-side protocol handler, with "record, then acknowledge" for incoming PUBLISH, and
    subscriptions taken in the packet's own task instead of a queue a task of the client loop waits on."""

    hub: DeviceHub | None = None
    desk: SubscriptionDesk | None = None

    def serve(self, hub: DeviceHub, desk: SubscriptionDesk) -> None:
        """From now on, device messages go to `hub` and subscriptions to `desk`."""
        self.hub = hub
        self.desk = desk
        self._in_order = asyncio.Lock()  # SUBSCRIBE and UNSUBSCRIBE are answered in the order they came
        slim_handler(self)

    async def start(self) -> None:
        await super().start()
        slim_started_handler(self)

    async def handle_subscribe(self, subscribe: SubscribePacket) -> None:
        desk = self.desk
        if desk is None or subscribe.variable_header is None or subscribe.payload is None:
            await super().handle_subscribe(subscribe)  # amqtt's checks and errors
            return
        subscription = Subscription(subscribe.variable_header.packet_id, subscribe.payload.topics)
        async with self._in_order:
            await desk.take_subscription(self.session, self, subscription)

    async def handle_unsubscribe(self, unsubscribe: UnsubscribePacket) -> None:
        desk = self.desk
        if desk is None or unsubscribe.variable_header is None or unsubscribe.payload is None:
            await super().handle_unsubscribe(unsubscribe)
            return
        unsubscription = UnSubscription(unsubscribe.variable_header.packet_id, unsubscribe.payload.topics)
        async with self._in_order:
            await desk.take_unsubscription(self.session, self, unsubscription)

    async def handle_publish(self, publish_packet: PublishPacket) -> None:
        # The reader loop starts one task per packet, in arrival order; nothing is awaited before
        # `submit`, so the hub takes each device's messages in the order they were read.
        identity = identity_of(self.session)
        topic = publish_packet.topic_name
        hub = self.hub
        if hub is None or identity is None or topic is None or _refused_by_amqtt(topic):
            await super().handle_publish(publish_packet)
            return
        if may_publish(identity, topic):
            recorded = hub.submit(identity, topic, bytes(publish_packet.data or b""))
        else:
            recorded = None
            metrics.REFUSED_MESSAGES.labels(reason="topic not allowed").inc()
            log.info("device %s may not publish on %s; message dropped", identity.device_id, topic)
        qos = publish_packet.qos
        if qos == QOS_0:
            return
        if recorded is not None:
            await recorded
        if qos == QOS_1:
            packet_id = publish_packet.variable_header.packet_id if publish_packet.variable_header else None
            if packet_id is not None:
                await self._send_packet(PubackPacket.build(packet_id))
            return
        await super().handle_publish(publish_packet)  # QoS 2: PUBREC, PUBREL, PUBCOMP as amqtt does them

    async def refuse_connect(self, return_code: int) -> None:
        """CONNACK with a refusal code (5: not authorized, 3: server unavailable, retry later)."""
        session_parent = self.session.parent if self.session is not None else 0
        await self._send_packet(ConnackPacket.build(session_parent, return_code))


class GatedReader(ReaderAdapter):  # type: ignore[misc]
    """Reads a connection only while `room()` allows: it waits between two MQTT packets, never inside one
    (so that amqtt's read timeout, which cancels a read, can never cut a packet in half).

    A packet that announces more than `max_packet` bytes raises `PacketTooLarge` as soon as its length
    is known, before its body is read. Until the device has logged in there is no `room` to wait for."""

    def __init__(
        self,
        inner: ReaderAdapter,
        room: Callable[[], Awaitable[None]] | None,
        max_packet: int | None = None,
        abort: Callable[[], None] | None = None,
    ) -> None:
        self._inner = inner
        self.room = room
        self._max_packet = max_packet
        self._left = 0  # bytes of the current packet still to come after its fixed header
        self._length: list[int] | None = None  # remaining-length bytes read so far, inside a fixed header
        self._abort = abort  # drops the connection at once
        self._silence_limit = 0.0
        self._heard_at = 0.0
        self._watch: asyncio.TimerHandle | None = None

    async def read(self, n: int = -1) -> bytes:
        if self._left == 0 and self._length is None and self.room is not None:
            await self.room()
        data: bytes = await self._inner.read(n)
        if self._watch is not None:
            self._heard_at = self._watch_loop().time()
        self._count(data)
        return data

    def keep_alive(self, seconds: int) -> None:
        """Drop the connection when the device sends nothing for 1.5 times its keep-alive ([MQTT-3.1.2-24]).

        amqtt reads each packet under a timeout of the keep-alive (a task per packet) and then does
        nothing when it runs out, so a device whose network vanished stayed connected; one timer per
        connection, moved on at most once per keep-alive, does it here instead."""
        if seconds <= 0 or self._abort is None:
            return
        self._silence_limit = 1.5 * seconds
        self._heard_at = self._watch_loop().time()
        self._watch = self._watch_loop().call_later(self._silence_limit, self._check_silence)

    def stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _check_silence(self) -> None:
        silent_for = self._watch_loop().time() - self._heard_at
        if silent_for < self._silence_limit:
            self._watch = self._watch_loop().call_later(self._silence_limit - silent_for, self._check_silence)
            return
        self._watch = None
        metrics.REFUSED_CONNECTIONS.labels(reason="keep-alive expired").inc()
        log.info("a device sent nothing for %.0f s (1.5 times its keep-alive); its connection is dropped", silent_for)
        if self._abort is not None:
            self._abort()

    @staticmethod
    def _watch_loop() -> asyncio.AbstractEventLoop:
        # Scheduling, not logic: the keep-alive runs on the event loop's own monotonic clock.
        return asyncio.get_running_loop()

    def _count(self, data: bytes) -> None:
        at = 0
        while at < len(data):
            if self._left:
                taken = min(self._left, len(data) - at)
                self._left -= taken
                at += taken
            elif self._length is None:
                self._length = []  # the packet type byte; its remaining length follows
                at += 1
            else:
                self._length.append(data[at])
                at += 1
                if data[at - 1] < 0x80 or len(self._length) == 4:
                    self._left = sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(self._length))
                    self._length = None
                    if self._max_packet is not None and self._left > self._max_packet:
                        metrics.REFUSED_CONNECTIONS.labels(reason="packet too large").inc()
                        raise PacketTooLarge(f"a packet of {self._left} bytes (at most {self._max_packet})")

    def feed_eof(self) -> None:
        self._inner.feed_eof()
