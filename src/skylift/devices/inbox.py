"""The device inbox: a device's message is acknowledged only once it is durably recorded, and it is
applied in the order the device sent it, exactly once, even across a crash.

Intake queues a message in memory at once, in arrival order, and hands back a receipt. One worker
then runs cycles; each cycle is one transaction (a batch, see `Database.batch`) that

1. applies queued items fairly: round robin over the devices, one item per device per turn, each
   device's items in the order they came (a subscription is an item too, so it stays ordered with
   the device's messages), for a few milliseconds or a bounded number of items; what those items'
   reports read (their devices' open attempts and versions) is loaded first, in one query each, so
   that applying a report asks no query of its own;
2. records every message that arrived and is not applied yet as a `device_inbox` row (group commit:
   the messages of many devices in one insert, one commit);
3. deletes the rows of the messages it applied;

and commits. Only then are the receipts of the messages it recorded or applied fulfilled, and the
broker sends their PUBACKs. A message applied in the cycle it arrived in is never written as a row.
Items are applied without savepoints (two statements less each); when one fails, the cycle is rolled
back and done again with savepoints, so that a failing item undoes only itself.
At start, the rows a crash left are queued again (in id order) before any new message comes in.

A device with `ROOM_PER_DEVICE` items queued is read no further (`wait_for_room`) until half of
them are applied: its socket is left unread and TCP slows it down; nothing it sent is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import ColumnElement, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from skylift.db.base import table_of
from skylift.db.chunks import id_chunks
from skylift.db.session import Database, after_commit, current_batch
from skylift.devices.credentials import identity_for
from skylift.devices.identity import DeviceIdentity, LoginStyle
from skylift.devices.models import InboxMessage
from skylift.kit import metrics
from skylift.registry.models import Device

log = logging.getLogger(__name__)

Handler = Callable[[DeviceIdentity, str, bytes], Awaitable[None]]
# Called in a cycle's transaction, before its messages are applied, with their devices' ids.
Preparer = Callable[[AsyncSession, set[int]], Awaitable[None]]
Job = Callable[[], Awaitable[None]]
Publisher = Callable[[str, bytes], Awaitable[None]]

ROOM_PER_DEVICE = 100  # queued items of one device before its connection is read no further
CYCLE_SECONDS = 0.025  # how long one cycle goes on applying before it commits
CYCLE_ITEMS = 500  # at most this many items applied in one cycle
# ... and at least this many, when queued: on a loaded machine one item can outlast CYCLE_SECONDS, and
# cycles of one item each (with the wait for other users of the database between two) fell behind.
CYCLE_MIN_ITEMS = 16
RETRY_SECONDS = 1.0  # after a cycle failed to commit
YIELD_SECONDS = 0.1  # at most this long between two cycles while other connections use the database
STOP_SECONDS = 10.0  # at shutdown, how long queued items are still applied
# A token device's topics carry its access token, which is sealed at rest: the inbox keeps this mark in
# its place and the replay puts back the token of the identity it rebuilds from the device's row.
_TOKEN_MARK = "{access_token}"


@dataclass(eq=False)
class _Message:
    identity: DeviceIdentity
    topic: str
    payload: bytes
    received_at: datetime
    receipt: asyncio.Future[bool] | None  # None: replayed from a row
    row_id: int | None = None
    applied: bool = False


@dataclass(eq=False)
class _Job:
    run: Job
    what: str
    done: asyncio.Future[None]  # settled once the job's transaction has committed


_Item = _Message | _Job


def _stored_topic(identity: DeviceIdentity, topic: str) -> str:
    return topic.replace(identity.access_token, _TOKEN_MARK) if identity.access_token else topic


def _what(item: _Item) -> str:
    return item.what if isinstance(item, _Job) else f"message on {item.topic}"


class _Redo(Exception):
    """An item failed inside a batch without savepoints: the batch is rolled back and done again."""


def deferred_in_batches(publisher: Publisher) -> Publisher:
    """Messages to devices decided inside a batch go out once the batch has committed, never before."""

    async def publish(topic: str, payload: bytes) -> None:
        session = current_batch()
        if session is None:
            await publisher(topic, payload)
        else:
            after_commit(session, partial(publisher, topic, payload))

    return publish


class Inbox:
    def __init__(
        self, database: Database, handler: Handler, prepare: Preparer | None = None, node: str = "main"
    ) -> None:
        self.database = database
        self.node = node  # rows are recorded as this replica's
        self._handler = handler
        self._prepare = prepare
        self._queues: dict[int, deque[_Item]] = {}
        self._turns: deque[int] = deque()  # devices with queued items, in round-robin order
        self._fresh: list[_Message] = []  # arrived, neither recorded nor applied yet
        self._rooms: dict[int, asyncio.Event] = {}  # set when a device may be read again
        self._choosing: Counter[int] = Counter()  # items taken off a device's queue by a cycle, not yet applied
        self._work = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        # An item that failed in a batch without savepoints: batches have savepoints until it is applied.
        self._suspect: _Item | None = None

    async def start(self) -> None:
        """Queue the messages a crash left unapplied, then start applying."""
        await self._replay(InboxMessage.node == self.node)
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="device-inbox")

    def append(self, identity: DeviceIdentity, topic: str, payload: bytes, now: datetime) -> asyncio.Future[bool]:
        """Queue a device's message (synchronous, so arrival order is kept). The receipt is done once
        the message is durably recorded: the device may hear its PUBACK then."""
        receipt: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        message = _Message(identity, topic, payload, now, receipt)
        self._fresh.append(message)
        self._queue(identity.device_id, message)
        return receipt

    def enqueue(self, device_id: int, job: Job, what: str) -> asyncio.Future[None]:
        """Queue work that must run in order with the device's messages (not recorded: a subscription
        belongs to a connection, which a restart ends anyway). The future is done once the job's
        transaction has committed (or the job failed and was logged)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue(device_id, _Job(job, what, done))
        return done

    def backlog(self, device_id: int) -> int:
        """The device's items queued and not applied yet."""
        queue = self._queues.get(device_id)
        return (len(queue) if queue is not None else 0) + self._choosing[device_id]

    async def wait_for_room(self, device_id: int) -> None:
        """Return once the device may send more: at once, unless it has `ROOM_PER_DEVICE` items queued."""
        while self.backlog(device_id) >= ROOM_PER_DEVICE:
            metrics.PAUSED_READS.inc()
            room = self._rooms.setdefault(device_id, asyncio.Event())
            await room.wait()

    async def stop(self) -> None:
        """Apply what is queued, for at most `STOP_SECONDS` (rows left are replayed at the next start)."""
        self._stopping = True
        self._work.set()
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), STOP_SECONDS)
        except TimeoutError:
            log.warning("stopping with %d device messages unapplied; they are applied at the next start", len(self))
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values()) + sum(self._choosing.values())

    def _queue(self, device_id: int, item: _Item, first: bool = False) -> None:
        """Queue an item behind the device's others (`first`: before them, and the device's turn first)."""
        queue = self._queues.get(device_id)
        if queue is None:
            queue = self._queues[device_id] = deque()
            if first:
                self._turns.appendleft(device_id)
            else:
                self._turns.append(device_id)
        if first:
            queue.appendleft(item)
        else:
            queue.append(item)
        self._work.set()

    def _next(self) -> tuple[int, _Item] | None:
        """The next item in round-robin order, taken off its device's queue."""
        if not self._turns:
            return None
        device_id = self._turns.popleft()
        queue = self._queues[device_id]
        item = queue.popleft()
        if queue:
            self._turns.append(device_id)
        else:
            del self._queues[device_id]
        return device_id, item

    async def _run(self) -> None:
        while True:
            if not self._turns and not self._fresh:
                if self._stopping:
                    return
                self._work.clear()
                await self._work.wait()
                continue
            if not await self._cycle():
                await asyncio.sleep(RETRY_SECONDS)
            await self._let_others_in()

    async def _let_others_in(self) -> None:
        """SQLite has one writer at a time, and a connection waiting for its turn sleeps in growing steps
        (up to 0.1 s): cycles back to back would starve it (an API request, the rollout engine). So
        the next cycle waits while another connection is in use, for at most `YIELD_SECONDS`."""
        checked_out = getattr(self.database.engine.pool, "checkedout", None)
        if not self.database.is_sqlite or checked_out is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + YIELD_SECONDS
        while checked_out() > 0 and loop.time() < deadline:
            await asyncio.sleep(0.002)

    async def _cycle(self) -> bool:
        """One transaction: apply, record, forget; then fulfil the receipts. False when it failed."""
        loop = asyncio.get_running_loop()
        taken: list[tuple[int, _Item]] = []
        untaken: deque[tuple[int, _Item]] = deque()
        fresh: list[_Message] = []
        careful = self._suspect is not None
        try:
            async with self.database.batch(savepoints=careful) as batch:
                # The cycle's items are chosen first, so that what they read is loaded once for all of them.
                while len(untaken) < CYCLE_ITEMS and (picked := self._next()) is not None:
                    untaken.append(picked)
                    self._choosing[picked[0]] += 1
                if self._prepare is not None and untaken:
                    await self._prepare(batch.session, {device_id for device_id, _ in untaken})
                deadline = loop.time() + CYCLE_SECONDS  # applying, not loading, is what the deadline bounds
                while untaken and not (len(taken) >= CYCLE_MIN_ITEMS and loop.time() >= deadline):
                    picked = untaken.popleft()
                    taken.append(picked)
                    error = await self._apply(picked[1])
                    self._unchoose(picked[0])
                    if batch.failed:
                        self._suspect = picked[1]
                        raise _Redo
                    if error is not None:
                        log.error("handling a %s from device %s failed", _what(picked[1]), picked[0], exc_info=error)
                self._put_back(list(untaken), [], chosen=len(untaken))  # past the deadline: for the next cycle
                untaken.clear()
                fresh, self._fresh = self._fresh, []
                await self._record(batch.session, [message for message in fresh if not message.applied])
                applied = [item.row_id for _, item in taken if isinstance(item, _Message) and item.row_id is not None]
                await self._forget(batch.session, applied)
        except _Redo:
            self._put_back([*taken, *untaken], fresh, chosen=len(untaken))
            return True
        except Exception:
            log.exception("the device inbox failed to commit %d items; trying again", len(taken) + len(fresh))
            self._put_back([*taken, *untaken], fresh, chosen=len(untaken))
            return False
        if careful and any(item is self._suspect for _, item in taken):
            self._suspect = None
        for message in fresh:
            if message.receipt is not None and not message.receipt.done():
                message.receipt.set_result(True)
        for _, item in taken:
            if isinstance(item, _Job) and not item.done.done():
                item.done.set_result(None)
        metrics.APPLIED_MESSAGES.inc(sum(1 for _, item in taken if isinstance(item, _Message)))
        self._open_rooms()
        return True

    async def _apply(self, item: _Item) -> Exception | None:
        """Apply one item; its error, if it failed (the item is done with all the same)."""
        try:
            if isinstance(item, _Job):
                await item.run()
            else:
                await self._handler(item.identity, item.topic, item.payload)
        except Exception as exc:
            return exc
        finally:
            if isinstance(item, _Message):
                item.applied = True
        return None

    async def adopt(self, row_ids: Sequence[int]) -> None:
        """Apply rows another replica acknowledged and did not apply (it stopped; devices/nodes.py), each
        before whatever its device sent since."""
        await self._replay(*(InboxMessage.id.in_(chunk) for chunk in id_chunks(sorted(row_ids))), first=True)

    async def _record(self, session: AsyncSession, messages: Sequence[_Message]) -> None:
        if not messages:
            return
        rows = [
            {
                "device_id": message.identity.device_id,
                "login_style": message.identity.login_style.value,
                "auto_subscribe": message.identity.auto_subscribe,
                "topic": _stored_topic(message.identity, message.topic),
                "payload": message.payload,
                "received_at": message.received_at,
                "node": self.node,
            }
            for message in messages
        ]
        # Ids in arrival order, so that a replay applies each device's messages in the order it sent them.
        table = table_of(InboxMessage)
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        ids = (await session.execute(statement, rows)).scalars().all()
        for message, row_id in zip(messages, ids, strict=True):
            message.row_id = row_id

    @staticmethod
    async def _forget(session: AsyncSession, row_ids: Sequence[int]) -> None:
        for chunk in id_chunks(row_ids):
            statement = delete(InboxMessage).where(InboxMessage.id.in_(chunk))
            await session.execute(statement.execution_options(synchronize_session=False))

    def _unchoose(self, device_id: int) -> None:
        self._choosing[device_id] -= 1
        if self._choosing[device_id] <= 0:
            del self._choosing[device_id]

    def _put_back(self, taken: list[tuple[int, _Item]], fresh: list[_Message], chosen: int = 0) -> None:
        """A cycle failed and was rolled back (or ran out of time): its items are queued again as they were.
        The last `chosen` of them were taken off their queues but never applied."""
        for device_id, _ in taken[len(taken) - chosen :]:
            self._unchoose(device_id)
        for device_id, item in reversed(taken):
            if isinstance(item, _Message):
                item.applied = False
            self._queue(device_id, item, first=True)
        for message in fresh:
            message.row_id = None
        self._fresh[:0] = fresh

    def _open_rooms(self) -> None:
        for device_id, room in list(self._rooms.items()):
            if self.backlog(device_id) <= ROOM_PER_DEVICE // 2:
                room.set()
                del self._rooms[device_id]

    async def _replay(self, *which: ColumnElement[bool], first: bool = False) -> None:
        """Queue the recorded rows each of `which` selects, in arrival order (`first`: before each device's
        queue). All are read before any is queued, so that the worker never takes a later one first."""
        async with self.database.transaction() as session:
            rows: list[InboxMessage] = []
            for condition in which:
                rows += (await session.scalars(select(InboxMessage).where(condition))).all()
            rows.sort(key=lambda row: row.id)
            if not rows:
                return
            devices: dict[int, Device] = {}
            device_ids = sorted({row.device_id for row in rows})
            for chunk in id_chunks(device_ids):
                found = await session.scalars(
                    select(Device).where(Device.id.in_(chunk)).options(selectinload(Device.product))
                )
                devices.update((device.id, device) for device in found)
            gone = []
            replayed: dict[int, list[_Message]] = {}
            for row in rows:
                device = devices.get(row.device_id)
                if device is None:
                    gone.append(row.id)  # the device was deleted meanwhile
                    continue
                identity = identity_for(device, LoginStyle(row.login_style), row.auto_subscribe)
                topic = row.topic.replace(_TOKEN_MARK, identity.access_token)
                message = _Message(identity, topic, row.payload, row.received_at, None, row_id=row.id)
                replayed.setdefault(device.id, []).append(message)
            for device_id, messages in replayed.items():
                for message in reversed(messages) if first else messages:
                    self._queue(device_id, message, first=first)
            await self._forget(session, gone)
        log.info("%d device messages acknowledged and not applied are applied now", len(rows) - len(gone))
