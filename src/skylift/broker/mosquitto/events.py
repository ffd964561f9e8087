"""What arrives from the external broker, turned into the device hub's calls in the order it arrived.

Two kinds of message come in on Skylift's session: the plugin's events (a device connected, subscribed,
unsubscribed, left; a snapshot of every connection) and the devices' own messages. A device message
names its device in its topic (a token, `{pk}/{dn}` or an EZtCloud username) and the plugin lets each
device publish on its own topics only, so the topic says who spoke. Names are looked up in batches.

Per device, everything is applied in order: while its connection is being recorded, what follows
for it waits. A newer connection of a device closes its older ones (as the embedded broker does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skylift.broker.mosquitto.link import EVENTS_TOPIC, BrokerAddress, BrokerLink, Received
from skylift.devices.credentials import identities_named, wants_auto_subscribe
from skylift.devices.hub import DeviceHub
from skylift.devices.identity import DeviceIdentity
from skylift.devices.topics import auto_subscriptions, redact, route
from skylift.kit import metrics

log = logging.getLogger(__name__)

MAX_BATCH = 2_000  # arrivals looked up together
MAX_NAMES_KEPT = 200_000


# A message as it arrived, with the plugin's event it carries or the `{id}` of the device topic it came on.
Arrival = tuple[Received, dict[str, Any] | None, str | None]


@dataclass
class Connection:
    identity: DeviceIdentity
    epoch: int = 0
    filters: set[str] = field(default_factory=set)


class ExternalBroker:
    """The embedded broker's counterpart (start, publish, disconnect, stop) for an external one."""

    def __init__(self, address: BrokerAddress, hub: DeviceHub) -> None:
        self.hub = hub
        self.link = BrokerLink(address, self._arrived, self._link_connected)
        self._arrivals: asyncio.Queue[Received] = asyncio.Queue()
        self._names: dict[str, DeviceIdentity] = {}  # tokens, usernames and topic ids -> their device
        self._connections: dict[str, Connection] = {}  # client id -> its connection
        self._device_clients: dict[int, set[str]] = {}  # device -> its client ids
        self._waiting: dict[int, list[Callable[[], None]]] = {}  # device -> what waits for its step
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="external broker arrivals")
        await self.link.start()

    async def stop(self) -> None:
        await self.link.stop()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.link.publish(topic, payload)

    async def disconnect(self, device_id: int) -> None:
        """Close a device's connections (its credentials changed): looked up afresh from now on."""
        self._names.clear()
        client_ids = self._clients_of(device_id)
        if client_ids:
            await self.link.command({"command": "kick", "client_ids": client_ids})

    def _clients_of(self, device_id: int) -> list[str]:
        return sorted(self._device_clients.get(device_id, ()))

    def _track(self, client_id: str, connection: Connection | None) -> None:
        """Record (or, with None, drop) the client id's connection."""
        old = self._connections.pop(client_id, None)
        if old is not None:
            clients = self._device_clients.get(old.identity.device_id, set())
            clients.discard(client_id)
            if not clients:
                self._device_clients.pop(old.identity.device_id, None)
        if connection is not None:
            self._connections[client_id] = connection
            self._device_clients.setdefault(connection.identity.device_id, set()).add(client_id)

    # Arrivals: handed over by the link in the order the broker sent them.

    def _arrived(self, message: Received) -> None:
        self._arrivals.put_nowait(message)

    def _link_connected(self) -> None:
        # Events may have been missed while away (or the broker restarted): ask for the whole picture.
        self._spawn(self.link.command({"command": "snapshot"}))

    async def _run(self) -> None:
        while True:
            batch = [await self._arrivals.get()]
            while len(batch) < MAX_BATCH and not self._arrivals.empty():
                batch.append(self._arrivals.get_nowait())
            items = [_arrival(message) for message in batch]
            while True:  # in place: what came later waits, so that the order holds
                try:
                    await self._look_up(items)
                    break
                except Exception:
                    log.exception("looking up the devices of %d broker messages failed; retrying", len(items))
                    await asyncio.sleep(1)
            for message, event, topic_id in items:
                try:
                    self._apply(message, event, topic_id)
                except Exception:  # one message that cannot be handled must not stop the others
                    log.exception("a message from the broker on %s could not be handled", redact(message.topic))
                    self.link.ack(message)

    async def _look_up(self, items: list[Arrival]) -> None:
        wanted: set[str] = set()
        for _, event, topic_id in items:
            if event is not None:
                clients = event.get("clients") if event.get("event") == "snapshot" else [event]
                wanted.update(c["username"] for c in clients or () if isinstance(c.get("username"), str))
            elif topic_id is not None:
                wanted.add(topic_id)
        wanted = {name for name in wanted if name not in self._names}  # (not `-= keys()`: that walks them all)
        if not wanted:
            return
        if len(self._names) > MAX_NAMES_KEPT:
            self._names.clear()
        async with self.hub.database.reading() as session:
            self._names.update(await identities_named(session, sorted(wanted)))

    def _apply(self, message: Received, event: dict[str, Any] | None, topic_id: str | None) -> None:
        if message.topic == EVENTS_TOPIC:
            if event is None:
                log.warning("an event from the broker's plugin could not be read")
            else:
                self._on_event(event)
            self.link.ack(message)
            return
        identity = self._names.get(topic_id) if topic_id is not None else None
        if identity is None:
            metrics.REFUSED_MESSAGES.labels(reason="unknown device").inc()
            log.info("a message on a topic of no known device was dropped")
            self.link.ack(message)
            return
        self._for_device(identity.device_id, functools.partial(self._submit, identity, message))

    def _submit(self, identity: DeviceIdentity, message: Received) -> None:
        recorded = self.hub.submit(identity, message.topic, message.payload)
        recorded.add_done_callback(lambda _: self.link.ack(message))

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "snapshot":
            self._reconcile([c for c in event.get("clients") or () if isinstance(c, dict)])
            return
        client_id = event.get("client_id")
        if not isinstance(client_id, str):
            return
        if kind == "connect":
            self._connect(client_id, event)
            return
        connection = self._connections.get(client_id)
        if connection is None:
            return
        device_id = connection.identity.device_id
        topic_filter = event.get("filter")
        if kind == "subscribe" and isinstance(topic_filter, str):
            self._for_device(device_id, functools.partial(self._subscribe, connection, topic_filter))
        elif kind == "unsubscribe" and isinstance(topic_filter, str):
            self._for_device(device_id, functools.partial(self._unsubscribe, connection, topic_filter))
        elif kind == "disconnect":
            self._leave(client_id, connection)

    def _connect(self, client_id: str, event: dict[str, Any], filters: tuple[str, ...] = ()) -> None:
        identity = self._names.get(str(event.get("username")))
        if identity is None:
            return  # gone since it logged in (deleted or disabled)
        auto = bool(event.get("auto_subscribe")) or wants_auto_subscribe(client_id)
        connection = Connection(dataclasses.replace(identity, auto_subscribe=auto))
        self._track(client_id, connection)
        others = [cid for cid in self._clients_of(identity.device_id) if cid != client_id]
        if others:  # the newest connection of a device wins
            self._spawn(self.link.command({"command": "kick", "client_ids": others}))
        self._for_device(identity.device_id, lambda: self._start_connection(connection))
        for topic_filter in filters:
            self._for_device(identity.device_id, functools.partial(self._subscribe, connection, topic_filter))

    def _reconcile(self, clients: list[dict[str, Any]]) -> None:
        """The broker's own list of connections: those missing from it left, the others are as it says."""
        present = {str(c.get("client_id")): c for c in clients}
        for client_id, gone in [(cid, c) for cid, c in self._connections.items() if cid not in present]:
            self._leave(client_id, gone)
        for client_id, client in present.items():
            filters = tuple(f for f in client.get("filters") or () if isinstance(f, str))
            connection = self._connections.get(client_id)
            if connection is None:
                self._connect(client_id, client, filters)
                continue
            device_id = connection.identity.device_id
            for topic_filter in sorted(set(filters) - connection.filters):
                self._for_device(device_id, functools.partial(self._subscribe, connection, topic_filter))
            for topic_filter in sorted(connection.filters - set(filters)):
                self._for_device(device_id, functools.partial(self._unsubscribe, connection, topic_filter))

    # Per device, one step at a time: a connection being recorded holds back what follows it.

    def _for_device(self, device_id: int, action: Callable[[], None]) -> None:
        waiting = self._waiting.get(device_id)
        if waiting is not None:
            waiting.append(action)
        else:
            action()

    def _start_connection(self, connection: Connection) -> None:
        device_id = connection.identity.device_id
        self._waiting[device_id] = []
        self._spawn(self._record_connection(connection))

    async def _record_connection(self, connection: Connection) -> None:
        identity = connection.identity
        try:
            connection.epoch = await self.hub.connected(identity)
            if identity.auto_subscribe:  # `_ss=1`: the plugin delivers its downlink topics to it
                for topic_filter in auto_subscriptions(identity):
                    self.hub.subscribed(identity, topic_filter)
        finally:
            self._release(identity.device_id)

    def _release(self, device_id: int) -> None:
        waiting = self._waiting.pop(device_id, [])
        while waiting:
            waiting.pop(0)()
            if device_id in self._waiting:  # that started another connection: the rest waits for it
                self._waiting[device_id].extend(waiting)
                return

    def _subscribe(self, connection: Connection, topic_filter: str) -> None:
        connection.filters.add(topic_filter)
        self.hub.subscribed(connection.identity, topic_filter)

    def _unsubscribe(self, connection: Connection, topic_filter: str) -> None:
        connection.filters.discard(topic_filter)
        self.hub.unsubscribed(connection.identity, sorted(connection.filters))

    def _leave(self, client_id: str, connection: Connection) -> None:
        """The connection is gone: recorded once the step before it is (its epoch is known then)."""
        self._track(client_id, None)
        self._for_device(connection.identity.device_id, functools.partial(self._disconnect, connection))

    def _disconnect(self, connection: Connection) -> None:
        self._spawn(self.hub.disconnected(connection.identity, connection.epoch))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("handling a broker event failed", exc_info=task.exception())


def _arrival(message: Received) -> Arrival:
    if message.topic != EVENTS_TOPIC:
        where = route(message.topic)
        return message, None, where.topic_id if where is not None else None
    try:
        event = json.loads(message.payload)
    except ValueError:
        return message, None, None
    return message, event if isinstance(event, dict) else None, None
