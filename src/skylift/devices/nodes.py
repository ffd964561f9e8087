"""Replicas: Skylift processes that share one database, each with its own embedded broker.

Each process is a node (SKYLIFT_NODE). A device's row names the node whose broker holds its connection;
only that node sends it notices (campaigns/outbox.py) and closes it when its credentials are revoked.
A device message is recorded as the node's that acknowledged it, and applied by that node.

Every node writes a heartbeat each round. A node silent for SKYLIFT_NODE_TIMEOUT_SECONDS is taken over
by the first live node that sees it: in one transaction, the silent node's devices are marked offline,
the messages it acknowledged and did not apply become the taker's (then applied before whatever those
devices sent since), and its heartbeat row is removed. A node that comes back under the same name
starts afresh.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.db.session import Database, claiming
from skylift.devices import service as device_service
from skylift.devices.inbox import Inbox
from skylift.devices.models import InboxMessage, Node
from skylift.kit.clock import Clock
from skylift.kit.loop import Loop
from skylift.registry.models import Device

log = logging.getLogger(__name__)

Disconnector = Callable[[int], Awaitable[None]]
KICKS_PER_ROUND = 500
# The exit status of a node that found itself taken over or replaced (EX_TEMPFAIL: it may start again).
STOPPED_TAKEN_OVER = 75


async def beat(session: AsyncSession, name: str, incarnation: str, now: datetime) -> str | None:
    """Record that the running node is alive; why it must stop instead, if it must."""
    node = await session.get(Node, name, with_for_update=True)
    if node is None:
        return "it was taken over by another node while it ran"
    if node.incarnation != incarnation:
        return "another process started under its name"
    node.seen_at = now
    return None


async def start(session: AsyncSession, name: str, incarnation: str, now: datetime) -> None:
    """The node starts (as `incarnation`, this process): its broker holds no connection yet, and it is
    alive from now on. A process still running under the same name stops at its next beat."""
    node = await session.get(Node, name, with_for_update=True)
    if node is None:
        session.add(Node(name=name, incarnation=incarnation, started_at=now, seen_at=now))
    else:
        node.incarnation = incarnation
        node.started_at = node.seen_at = now
    await session.flush()
    await device_service.mark_offline_on(session, name)


async def heartbeats(session: AsyncSession, name: str) -> dict[str, datetime]:
    """The other nodes' last heartbeats, as they wrote them (by their own clocks)."""
    rows = await session.execute(select(Node.name, Node.seen_at).where(Node.name != name))
    return dict(rows.tuples().all())


async def take_over(session: AsyncSession, name: str, silent: str, last_beat: datetime) -> list[int] | None:
    """Take over node `silent` if its heartbeat is still `last_beat`: its devices offline, its recorded
    messages this node's (their ids returned), its row gone. None when it beat again, or another node
    is taking it over."""
    node = await session.scalar(claiming(session, select(Node).where(Node.name == silent)))
    if node is None or node.seen_at != last_beat:
        return None
    await device_service.mark_offline_on(session, silent)
    rows = await session.execute(
        update(InboxMessage).where(InboxMessage.node == silent).values(node=name).returning(InboxMessage.id)
    )
    taken = list(rows.scalars())
    await session.delete(node)
    await session.flush()
    log.warning("node %s stopped beating: taken over by %s (%d device messages to apply)", silent, name, len(taken))
    return taken


def waiting_disconnects(name: str) -> Select[int, int]:
    """The query for devices on this node whose connection must close (credentials revoked or changed),
    with the epoch of that connection. It runs every second: its condition is the partial index's own."""
    return (
        select(Device.id, Device.connection_epoch)
        .where(Device.node == name, Device.disconnect_requested)
        .order_by(Device.id)
        .limit(KICKS_PER_ROUND)
    )


async def to_disconnect(session: AsyncSession, name: str) -> list[tuple[int, int]]:
    """Devices on this node whose connection must close, with the epoch of that connection."""
    return list((await session.execute(waiting_disconnects(name))).tuples().all())


async def disconnected(session: AsyncSession, connections: Sequence[tuple[int, int]]) -> None:
    """Those connections are closed. A device that connected again meanwhile keeps a request made since
    (a new connection starts without one)."""
    for device_id, epoch in connections:
        await session.execute(
            update(Device)
            .where(Device.id == device_id, Device.connection_epoch == epoch)
            .values(disconnect_requested=False)
        )


class NodeKeeper(Loop):
    """This node's heartbeat, the takeover of silent nodes, and the closing of revoked connections.

    A node is silent when its heartbeat has not changed while this node watched it, without a gap, for a
    whole timeout: after an outage of the database every node looked silent, and none may take over one
    that beats again.
    A node that finds itself taken over (it was paused or cut off that long) stops at once, without
    applying what it holds: those messages are the taker's now. Its devices reconnect elsewhere. So does
    a process that finds another one started under its name (two may never share one).
    """

    name = "node keeper"

    def __init__(
        self,
        database: Database,
        inbox: Inbox,
        disconnect: Disconnector,
        clock: Clock,
        node: str,
        incarnation: str,
        timeout_seconds: float,
        interval_seconds: float,
    ) -> None:
        super().__init__(interval_seconds)
        self.incarnation = incarnation
        self.database = database
        self.inbox = inbox
        self.disconnect = disconnect
        self.clock = clock
        self.node = node
        self.timeout = timedelta(seconds=timeout_seconds)
        self._last_beat: datetime | None = None
        # Each other node's heartbeat as last read, and when (by this node's clock) it was first read so.
        self._watched: dict[str, tuple[datetime, datetime]] = {}

    def _watch(self, beats: dict[str, datetime], now: datetime) -> list[tuple[str, datetime]]:
        """The nodes whose heartbeat has not changed for a whole timeout of this node's watching: judged by
        this node's clock alone, so that clocks that disagree between machines cannot make a live node
        look silent."""
        self._watched = {
            name: (beat, self._watched[name][1] if name in self._watched and self._watched[name][0] == beat else now)
            for name, beat in beats.items()
        }
        return [(name, beat) for name, (beat, since) in self._watched.items() if now - since >= self.timeout]

    async def round(self) -> None:
        now = self.clock.now()
        async with self.database.transaction() as session:
            reason = await beat(session, self.node, self.incarnation, now)
            if reason is not None:
                log.critical("node %s stops now: %s", self.node, reason)
                _stop_at_once()
            if self._last_beat is None or now - self._last_beat > self.timeout / 2:
                self._watched.clear()  # a gap: the others may have looked as silent as this node did
            self._last_beat = now
            silent = self._watch(await heartbeats(session, self.node), now)
        adopted: list[int] = []
        for name, last_beat in silent:
            async with self.database.transaction() as session:
                taken = await take_over(session, self.node, name, last_beat)
            self._watched.pop(name, None)
            adopted += taken or []
        if adopted:
            await self.inbox.adopt(adopted)
        async with self.database.transaction() as session:
            revoked = await to_disconnect(session, self.node)
        for device_id, _ in revoked:
            await self.disconnect(device_id)
        if revoked:
            async with self.database.transaction() as session:
                await disconnected(session, revoked)


def _stop_at_once() -> None:
    """End the process without its shutdown steps: they would apply messages that are another node's."""
    logging.shutdown()
    os._exit(STOPPED_TAKEN_OVER)
