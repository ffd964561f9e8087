"""Leaner per-connection queues for the embedded broker.

amqtt gives every connection four `asyncio.Queue`s: the session's retained and delivered messages,
and the handler's pending subscriptions and unsubscriptions. Each queue makes three deques and an
`asyncio.Event` (with a deque of its own) up front, and every deque allocates a 64-slot block: about
3 KiB per queue, most of it never used by a device that only connects, subscribes and waits. Here
the parts a queue needs only once something waits on it, or once something is put in it, are made
when first touched.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session

# Queue attributes that can come into being on first use: the getters' and putters' waiting
# futures, and the event `join()` waits on (set while nothing is unfinished).
_LAZY = ("_getters", "_putters", "_finished")


class LeanQueue(asyncio.Queue[Any]):
    """An `asyncio.Queue` whose waiting lists and join event are made when first touched."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        for name in _LAZY:
            self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not (yet) on the instance.
        value: Any
        if name in ("_getters", "_putters"):
            value = collections.deque()
        elif name == "_finished":
            value = asyncio.Event()
            if self._unfinished_tasks == 0:
                value.set()
        else:
            raise AttributeError(name)
        self.__dict__[name] = value
        return value


def slim_session(session: Session) -> None:
    """Give a session fresh from its CONNECT lean queues (it holds nothing yet)."""
    if session.retained_messages.empty() and session.delivered_message_queue.empty():
        session.retained_messages = LeanQueue()
        session.delivered_message_queue = LeanQueue()


def slim_handler(handler: BrokerProtocolHandler) -> None:
    """Give a new protocol handler lean queues for the subscriptions and unsubscriptions it receives."""
    handler._pending_subscriptions = LeanQueue()
    handler._pending_unsubscriptions = LeanQueue()
