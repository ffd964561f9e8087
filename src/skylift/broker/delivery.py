"""Sending the server's own messages (notices, replies, blocks) to a connected session, without a task each.

amqtt puts such a message on its broadcast queue; its broadcast loop runs each one in a task of its own,
waited on with `asyncio.wait`, and delivers it in one more task that awaits the PUBACK under
`asyncio.wait_for`. Here the PUBLISH is written at once and its PUBACK is awaited by a future with a
callback, in amqtt's own bookkeeping (the session's `inflight_out`, the handler's PUBACK waiters), so
packet ids, an arriving PUBACK and a closing connection are handled by amqtt as for its own deliveries.
A PUBACK that does not come within `PUBACK_TIMEOUT_SECONDS` is given up on, as amqtt gives up on its own.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial

from amqtt.errors import AMQTTError
from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import OutgoingApplicationMessage, Session

log = logging.getLogger(__name__)

PUBACK_TIMEOUT_SECONDS = 5.0


def send_at_least_once(handler: BrokerProtocolHandler, session: Session, topic: str, data: bytes) -> bool:
    """Write a QoS 1 PUBLISH of `data` on `topic` to the session's connection and track its PUBACK.
    False when the connection cannot take it (closed, or no packet id free)."""
    writer = handler.writer
    if writer is None or getattr(writer, "is_closed", False):
        return False
    try:
        packet_id = session.next_packet_id
    except AMQTTError:
        log.warning("no free packet id for a message to %s: 65,535 are awaiting their PUBACK", session.client_id)
        return False
    message = OutgoingApplicationMessage(packet_id, topic, QOS_1, data, False)
    message.publish_packet = message.build_publish_packet()
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[PubackPacket] = loop.create_future()
    session.inflight_out[packet_id] = message
    handler._puback_waiters[packet_id] = waiter
    timer = loop.call_later(PUBACK_TIMEOUT_SECONDS, _give_up, waiter)
    waiter.add_done_callback(partial(_settled, handler, session, message, timer))
    try:
        writer.write(message.publish_packet.to_bytes())
    except (OSError, RuntimeError):
        waiter.cancel()
        return False
    return True


def _give_up(waiter: asyncio.Future[PubackPacket]) -> None:
    if not waiter.done():
        waiter.cancel()


def _settled(
    handler: BrokerProtocolHandler,
    session: Session,
    message: OutgoingApplicationMessage,
    timer: asyncio.TimerHandle,
    waiter: asyncio.Future[PubackPacket],
) -> None:
    """The PUBACK came, the wait timed out, or the connection closed (amqtt cancels its waiters)."""
    timer.cancel()
    packet_id = message.packet_id
    if handler._puback_waiters.get(packet_id) is waiter:
        del handler._puback_waiters[packet_id]
    if session.inflight_out.get(packet_id) is message:
        del session.inflight_out[packet_id]
    if not waiter.cancelled():
        message.puback_packet = waiter.result()
