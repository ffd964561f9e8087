"""Leaner per-connection state for the embedded broker.

amqtt gives every connection four `asyncio.Queue`s (the session's retained and delivered messages, the
handler's pending subscriptions and unsubscriptions), two `asyncio.Event`s, and a client loop that keeps
four tasks waiting on them, one per source, plus an `asyncio.wait` over the four. Every deque in those
primitives allocates a 64-slot block (about 600 bytes) even to hold one waiting future; with the tasks
and their coroutines, that was about half of what an idle connected device cost the server.

Here:
- waiting lists are short lists (`Waiters`), not deques;
- a session's delivered messages are handed on by a task that exists only while there are messages
  (`DeliveryQueue`), not by a task that waits for them for the whole connection;
- subscriptions are handled by the handler's own packet task (see `intake.DeviceProtocolHandler`), so
  their queues stay empty, and the client loop waits for the disconnection only (`SkyliftBroker`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from amqtt.broker import Broker
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler, Subscription, UnSubscription
from amqtt.session import Session

log = logging.getLogger(__name__)


class Waiters(list[Any]):
    """Stands in for the deque of waiting futures (or queued items) that asyncio's primitives keep: a
    connection's have none or one at a time, and an empty list is 56 bytes against a deque's 600."""

    def popleft(self) -> Any:
        return self.pop(0)


def lean_event(event: asyncio.Event) -> asyncio.Event:
    """Give an event no one waits on yet a short waiting list."""
    if not event._waiters:  # noqa: SLF001 - the one attribute that makes an Event heavy
        event._waiters = Waiters()  # type: ignore[assignment]  # noqa: SLF001
    return event


class LeanQueue(asyncio.Queue[Any]):
    """An `asyncio.Queue` that keeps its items and waiting futures in short lists.

    Taking an item costs O(n) in the items held; the queues here hold a handful at a time (a session's
    messages kept while it is away are the most, and those are given out once, at its reconnect)."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self._getters: Any = Waiters()
        self._putters: Any = Waiters()
        lean_event(self._finished)  # type: ignore[attr-defined]

    def _init(self, maxsize: int) -> None:
        self._queue: Any = Waiters()

    def _get(self) -> Any:
        return self._queue.popleft()


class DeliveryQueue(LeanQueue):
    """A session's `delivered_message_queue`: what its device published and amqtt's broker is to relay.

    amqtt's client loop keeps a task waiting on this queue for as long as the device is connected; here a
    task is started when a message arrives and ends when the queue is empty again. Messages are handed on
    one at a time, in the order they arrived."""

    def __init__(self, deliver: Callable[[Any], Awaitable[None]]) -> None:
        super().__init__()
        self._deliver = deliver
        self._draining: asyncio.Task[None] | None = None

    def _put(self, item: Any) -> None:
        super()._put(item)
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while not self.empty():
                message = self.get_nowait()
                try:
                    await self._deliver(message)
                except Exception:
                    log.exception("a device's message could not be relayed")
                finally:
                    self.task_done()
        finally:
            self._draining = None


class NoQueue:
    """Stands in for the handler's pending (un)subscription queues, which nothing fills any more: amqtt's
    `stop()` still empties them."""

    @staticmethod
    def empty() -> bool:
        return True


NO_QUEUE = NoQueue()


def slim_session(session: Session, deliver: Callable[[Session, Any], Awaitable[None]]) -> None:
    """Give a session fresh from its CONNECT lean queues (it holds nothing yet)."""
    if session.retained_messages.empty() and session.delivered_message_queue.empty():
        session.retained_messages = LeanQueue()
        session.delivered_message_queue = DeliveryQueue(lambda message: deliver(session, message))


def slim_handler(handler: BrokerProtocolHandler) -> None:
    """A new protocol handler takes subscriptions in its packet tasks: it needs no queues for them."""
    handler._pending_subscriptions = NO_QUEUE  # noqa: SLF001
    handler._pending_unsubscriptions = NO_QUEUE  # noqa: SLF001


def slim_started_handler(handler: BrokerProtocolHandler) -> None:
    """The two events a handler makes when it starts, with short waiting lists."""
    for name in ("_reader_ready", "_reader_stopped"):
        event = getattr(handler, name, None)
        if isinstance(event, asyncio.Event):
            lean_event(event)


class LeanBroker(Broker):  # type: ignore[misc]
    """amqtt's broker with a client loop that holds no task of its own per connection."""

    async def _client_message_loop(self, session: Session, handler: BrokerProtocolHandler) -> None:
        """Wait for the device to leave, then end its session as amqtt does. amqtt's loop keeps four tasks
        per connection waiting on the disconnection, the (un)subscriptions and the device's messages; here
        those come through the handler's packet tasks (`take_subscription`, `_relay_from`)."""
        waiter = handler._disconnect_waiter  # noqa: SLF001
        if waiter is None:  # the device left while its session was being set up
            waiter = _settled(None)
        try:
            await waiter
        except asyncio.CancelledError:
            return  # as amqtt's loop: a cancelled connection task skips the disconnection steps
        await self._handle_disconnect(session, handler, waiter)

    async def take_subscription(
        self, session: Session, handler: BrokerProtocolHandler, subscription: Subscription
    ) -> None:
        await self._handle_subscription(session, handler, _settled(subscription))

    async def take_unsubscription(
        self, session: Session, handler: BrokerProtocolHandler, unsubscription: UnSubscription
    ) -> None:
        await self._handle_unsubscription(session, handler, _settled(unsubscription))

    async def _relay_from(self, session: Session, message: Any) -> None:
        """A message the device published that amqtt relays (not one the hub took). amqtt ends the client
        loop for a topic it refuses ([MQTT-4.7.3-1], [MQTT-3.3.2-2], [MQTT-4.7.2-1]); here the
        connection is closed."""
        if await self._handle_message_delivery(session, None, _settled(message)):
            return
        current = self._sessions.get(session.client_id)
        if current is not None and current[0] is session:
            await current[1].handle_connection_closed()


def _settled(value: Any) -> asyncio.Future[Any]:
    """A future that already holds `value`, for amqtt's steps that take one from a waiter."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future
