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
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from skylift.db.session import Database
from skylift.devices import service as device_service
from skylift.devices.inbox import Inbox
from skylift.devices.models import InboxMessage, Node
from skylift.kit.clock import Clock
from skylift.kit.loop import Loop
from skylift.registry.models import Device

log = logging.getLogger(__name__)

Disconnector = Callable[[int], Awaitable[None]]
KICKS_PER_ROUND = 500


async def beat(session: AsyncSession, name: str, now: datetime, starting: bool = False) -> None:
    """Record that the node is alive (`starting`: it has just started, with no connection yet)."""
    node = await session.get(Node, name, with_for_update=not starting)
    if node is None:
        session.add(Node(name=name, started_at=now, seen_at=now))
    else:
        node.seen_at = now
        if starting:
            node.started_at = now
    await session.flush()


async def start(session: AsyncSession, name: str, now: datetime) -> None:
    """The node starts: its broker holds no connection yet, and it is alive from now on."""
    await beat(session, name, now, starting=True)
    await device_service.mark_offline_on(session, name)


async def take_over(session: AsyncSession, name: str, now: datetime, timeout: timedelta) -> list[int]:
    """Take over every node silent for `timeout`; the ids of the inbox rows that became this node's."""
    query = select(Node.name).where(Node.name != name, Node.seen_at < now - timeout).order_by(Node.name)
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    adopted: list[int] = []
    for silent in (await session.scalars(query)).all():
        await device_service.mark_offline_on(session, silent)
        rows = await session.execute(
            update(InboxMessage).where(InboxMessage.node == silent).values(node=name).returning(InboxMessage.id)
        )
        taken = list(rows.scalars())
        await session.execute(delete(Node).where(Node.name == silent))
        log.warning(
            "node %s has been silent since before %s: taken over by %s (%d device messages to apply)",
            silent,
            (now - timeout).isoformat(),
            name,
            len(taken),
        )
        adopted += taken
    return adopted


async def to_disconnect(session: AsyncSession, name: str) -> list[tuple[int, int]]:
    """Devices on this node whose connection must close (credentials revoked or changed), with the
    epoch of that connection."""
    query = (
        select(Device.id, Device.connection_epoch)
        .where(Device.node == name, Device.disconnect_requested.is_(True))
        .order_by(Device.id)
        .limit(KICKS_PER_ROUND)
    )
    return list((await session.execute(query)).tuples().all())


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
    """This node's heartbeat, the takeover of silent nodes, and the closing of revoked connections."""

    name = "node keeper"

    def __init__(
        self,
        database: Database,
        inbox: Inbox,
        disconnect: Disconnector,
        clock: Clock,
        node: str,
        timeout_seconds: float,
        interval_seconds: float,
    ) -> None:
        super().__init__(interval_seconds)
        self.database = database
        self.inbox = inbox
        self.disconnect = disconnect
        self.clock = clock
        self.node = node
        self.timeout = timedelta(seconds=timeout_seconds)

    async def round(self) -> None:
        now = self.clock.now()
        async with self.database.transaction() as session:
            await beat(session, self.node, now)
            adopted = await take_over(session, self.node, now, self.timeout)
        if adopted:
            await self.inbox.adopt(adopted)
        async with self.database.transaction() as session:
            revoked = await to_disconnect(session, self.node)
        for device_id, _ in revoked:
            await self.disconnect(device_id)
        if revoked:
            async with self.database.transaction() as session:
                await disconnected(session, revoked)
